"""Experiments: thin command lines (``python -m cortexnet.experiments.<name>``) composing the library."""
