"""Frozen video backbones: ``nn.Module``s mapping normalised clips [N, 3, T, H, W] to features [N, D].

Features are extracted once into the feature store; every backbone records its name, feature_dim, clip_len,
crop_size, mean/std and the sha256 of its weights file (or "random-init"). Weights come from local files only
(``backbone.weights``), never downloaded; ``backbone.random_init=true`` builds a seeded random model for smoke
tests. Configs name the class with ``_target_`` (``conf/backbone/<name>.yaml``).

========================  =====  ===========  ====  ==========================================
backbone (config)          D      native clip  crop  class
========================  =====  ===========  ====  ==========================================
c3d                        4096   16 x 1       112   :class:`~vadmil.backbones.c3d.C3DBackbone`
c2d_r50                    2048   8 x 8        224   :class:`~vadmil.backbones.pytorchvideo.PyTorchVideoBackbone`
i3d_r50 / i3d_r50_rtfm     2048   8 x 8        224   PyTorchVideoBackbone (rtfm: [-1, 1] scaling)
slow_r50                   2048   8 x 8        224   PyTorchVideoBackbone
slowfast_r50               2304   32 x 2       224   PyTorchVideoBackbone (slow pathway: T / 4 frames)
x3d_xs                     2048   4 x 12       160   PyTorchVideoBackbone
x3d_s                      2048   13 x 6       160   PyTorchVideoBackbone
x3d_m                      2048   16 x 5       224   PyTorchVideoBackbone
r2plus1d_r50               2048   16 x 4       224   PyTorchVideoBackbone
csn_r101                   2048   32 x 2       224   PyTorchVideoBackbone
========================  =====  ===========  ====  ==========================================

(native clip: frames x frame stride of the Kinetics-400 zoo model; PyTorchVideo heads use adaptive pooling here,
so other clip lengths, e.g. the field's 16-frame snippets, and crops work; C3D needs exactly 16 x 112 x 112.)

Modules: :mod:`.base` (``FrozenBackbone``), :mod:`.pytorchvideo`, :mod:`.c3d`, :mod:`.weights` (loading and
sha256 of local weights files).
"""
