"""The control plane's own persistence on top of :mod:`flagyard.db`: the event loop's read pool."""
