"""What differs between TF's distribution strategies, in one place per strategy.

``base`` (the questions every part of tfspark asks a strategy), ``mwms``
(MultiWorkerMirroredStrategy, and no strategy at all), ``pss`` (ParameterServerStrategy),
``tf_patches`` (every patch tfspark applies to TF/Keras, and the TF versions it knows).

Imports nothing of ``_driver``, ``_node`` or ``_feed``: they all ask it.
"""
