"""pxr: Pixel Reasoner (arXiv 2505.15966) as a small tested library under ordered notebooks.

Modules: ops (the visual operations), episode (one episode: image list, op execution, limits, record),
protocol (prompt, tool schemas, parsing), families (model families' box conventions), reward (correctness, RaPR, curiosity-shaped rewards),
scenes (synthetic high-resolution scenes and videos), video (frame sampling), viz (pictures for notebooks),
params / runs / cli (the `pxr` command: parameters, papermill runs, the pipeline).
"""

__version__ = "0.1.0"
