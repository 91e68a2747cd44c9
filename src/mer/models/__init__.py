"""Models: :mod:`mer.models.fusion` (the fusion classifier) and :mod:`mer.models.adapter`.

Import from the submodules so that a stage depends only on the model file it uses.
"""
