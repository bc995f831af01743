"""The network: activations and small layers (``layers``), Keras-named initialisers (``inits``), the MLP
family of the study (``models``)."""
