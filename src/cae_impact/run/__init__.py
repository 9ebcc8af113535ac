"""The top layer: the command line, the notebooks' API, execution, cache, kernels, provenance.

Named ``run`` (not ``build``: tools ignore folders named ``build``, as git does here).
``python -m cae_impact.run`` is the kernel server and the build's client (``__main__``).
"""
