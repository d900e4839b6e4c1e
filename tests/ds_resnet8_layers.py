"""The neuron layers of a DS-ResNet-8 (one block per stage), in forward order, written out by
hand: the reference that recording, plotting and activity-logging tests compare with."""

DS_RESNET8_NEURONS = [
    "stem_neuron",
    "stage1_block1/neuron1",
    "stage1_block1/neuron2",
    "stage2_block1/neuron1",
    "stage2_block1/shortcut_neuron",
    "stage2_block1/neuron2",
    "stage3_block1/neuron1",
    "stage3_block1/shortcut_neuron",
    "stage3_block1/neuron2",
]
