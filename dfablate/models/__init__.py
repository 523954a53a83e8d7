"""dfablate's own DeepFilterNet 2 and 3, built from plain arguments.

`build.build_model("dfn3", conv_ch=64, ...)` builds the model from config.ini parameter names (the
`model.params` of the Hydra configs); `build.resolved_model_params` gives every parameter with
defaults filled in, as the strings deepfilternet's config held (part of a checkpoint's model
identity). The models are ports of deepfilternet 0.5.6's `DfNet`: same parameter names and shapes,
same outputs (checked against upstream in tests/unit/test_models.py), no libdf, no global config.
`layers` holds the blocks, `stages` the encoder and decoders both architectures share, `dfn2` and
`dfn3` the nets, and `upstream` loads a released DeepFilterNet folder into them.
"""
