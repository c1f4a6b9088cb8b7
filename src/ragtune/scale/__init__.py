"""Where an ingest's heavy work runs: in this process (the default) or on a Ray cluster.

``engine.py`` the seam ``ragtune.ingest`` and ``ragtune.sync`` call (``open_engine``)
and the local engine; ``steps.py`` what both engines share; ``ray_ingest.py`` the Ray
engine (``ragtune[ray]``); ``streamed.py`` vectors computed elsewhere, handed to the
index's own write path.
"""
