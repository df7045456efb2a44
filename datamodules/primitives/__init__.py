"""The bottom layer: Lightning-free primitives that the data modules and the models share.

``audio`` (decode, list audio files), ``chunks`` (the chunk length, chunk positions, clip
means) and ``files`` (a file's digest, one atomic write, one JSON read). They import nothing
of the project, so anything may import them; they live at the bottom package,
``datamodules``, because the data modules may not import ``zoo`` (``tests/test_package.py``
checks both rules).
"""
