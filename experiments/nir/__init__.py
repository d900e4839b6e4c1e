"""NIR across frameworks: the peer framework's side of the cross-framework check."""
