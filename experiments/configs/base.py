"""Defaults shared by every experiment config (the paper's optimiser and neuron)."""

import ml_collections

import mlf_jax.zoo


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset = ""
    config.data_dir = ""
    config.cache_dir = ""  # converted event frames (default: <data_dir>/mlf_jax_cache)
    # Install a missing data set with the system package manager when possible
    # (Fashion-MNIST: Debian's dataset-fashion-mnist, as root).
    config.install_data = True
    # Per-example augmentation of the training images: '' (the data set's default: random
    # crop and flip for CIFAR10, none for the others), 'none', 'crop_flip', or
    # 'crop_flip_erase' (then random erasing); Fashion-MNIST and CIFAR10 only.
    config.augment = ""

    config.model = ml_collections.ConfigDict()
    # The neuron's settings default to the paper's MLF neuron's (its model declares them).
    mlf = mlf_jax.zoo.MLF()
    config.model.depth = 20
    config.model.widths = (64, 128, 256)
    config.model.shortcut = "ds"  # 'ds' (DS-ResNet) or 'standard' (spiking ResNet)
    config.model.time_steps = 4  # direct encoding: T; event data: T frames over a fixed window
    config.model.thresholds = mlf.thresholds  # K = 3 levels: 0.6, 1.6, 2.6; (0.6,) is LIF
    config.model.tau = mlf.tau
    # tdBN normalises each pre-activation to alpha * v_th * (x - mean) / std: None scales it
    # to the first threshold (the paper's), a number to that value instead.
    config.model.v_th = ml_collections.config_dict.placeholder(float)
    config.model.surrogate = "rectangular"  # rectangular | triangle | sigmoid | arctan
    config.model.surrogate_param = 1.0  # width (rectangular, triangle) or alpha
    config.model.detach_reset = mlf.detach_reset
    # Learn each neuron layer's leak (tau = sigmoid(w), starting at tau) and thresholds (the
    # first plus softplus gaps, starting at thresholds); weight decay applies to these raw
    # parameters too (pulling tau towards 0.5 and each gap towards log 2).
    config.model.learn_tau = mlf.learn_tau
    config.model.learn_thresholds = mlf.learn_thresholds
    # How static images become T steps: direct (repeated, the paper's) | rate (Bernoulli
    # spikes, p = intensity) | latency (one spike per pixel, brighter earlier); rate and
    # latency get intensities in [0, 1] instead of normalised images. Event data: direct.
    config.model.encoder = "direct"
    config.model.input_norm = False
    config.model.dtype = "float32"  # compute dtype of convolutions: float32 | bfloat16
    # auto | xla | patch_grad | im2col (mlf_jax.nn.conv). auto: on CPU XLA's convolution
    # with the kernel gradient as a patch matmul (patch_grad), XLA's elsewhere. im2col is
    # faster on single CPU convs but keeps 9x the input of each 3x3 conv for the backward
    # pass (figures: docs/guides/benchmarks.md, section "Convolutions")
    config.model.conv_impl = "auto"
    # Recompute each residual block in the backward pass instead of keeping its activations
    # (less memory on GPU/TPU, the same gradients; XLA:CPU undoes it).
    config.model.remat = False
    # How the neurons compute their dynamics: auto | scan | fused | pallas (the same numbers;
    # auto: an unrolled scan up to T = 10, the fused kernel beyond; pallas is lowered for
    # GPU/TPU but has not run on one yet, and is interpreted, slowly, on CPU).
    config.model.neuron_impl = mlf.impl

    config.seed = 0
    config.batch_size = 64
    config.eval_batch_size = 500
    config.num_epochs = 110
    config.learning_rate = 0.1
    config.momentum = 0.9
    config.weight_decay = 1e-4  # coupled L2, as PyTorch's SGD
    config.schedule = "step"  # step | cosine | constant
    config.lr_decay_epochs = 40
    config.lr_decay_factor = 0.1
    config.warmup_epochs = 0.0
    # Training examples held out as a validation set (0: none), evaluated after every epoch
    # beside the test set: choices of a recipe are made on it, never on the test set.
    config.validation_size = 0
    # Decay of an exponential moving average of the weights kept during training (0: none);
    # when set, every evaluation also reports the average's accuracy (tdBN's running
    # statistics are the trained weights').
    config.ema_decay = 0.0
    config.log_every = 20  # steps between progress-bar / metric updates
    # Every N steps (0: off), each neuron layer's firing rate (mean spikes per unit and
    # step) and dormant fraction on that step's batch, in metrics.jsonl (kind 'activity')
    # and TensorBoard (activity/firing_rate/<layer>, activity/dormant/<layer>).
    config.activity_every_steps = 0
    # Firing-rate regulariser: the loss gains firing_rate_reg * the mean over the neuron
    # layers of (rate - firing_rate_target)^2, rate = the layer's mean spike count per
    # unit and step on the batch (0: off, the plain cross-entropy).
    config.firing_rate_reg = 0.0
    config.firing_rate_target = 0.1

    # Data parallelism over every device of every process.
    config.parallel = "shard_map"  # shard_map | pmap
    config.cross_device_bn = True  # tdBN statistics over the global batch

    # JAX's persistent compilation cache: a restarted or repeated run skips compiling
    # ("" turns it off; a gs:// path works too).
    config.compilation_cache_dir = "~/.cache/mlf_jax/jax_cache"
    # Record a jax.profiler trace of steps (first, last), e.g. (10, 12), into
    # <workdir>/tensorboard (TensorBoard's profile tab); () for none.
    config.profile_steps = ()

    # Checkpoints in <workdir>/checkpoints: every epoch, every N steps (0: off), on SIGTERM.
    config.keep_checkpoints = 3
    config.checkpoint_every_steps = 0

    # Multi-host: all three set (or the MLF_JAX_* environment variables), or
    # auto=True to let jax.distributed.initialize() detect a TPU pod / SLURM job.
    config.distributed = ml_collections.ConfigDict()
    config.distributed.coordinator_address = ""
    config.distributed.num_processes = 0
    config.distributed.process_id = -1
    config.distributed.auto = False
    # Start-up gives up after this long (one clear line, exit code 1) if not every process
    # has reached the coordinator.
    config.distributed.timeout_seconds = 300
    return config
