"""HTTP plumbing every client ragtune makes shares: the whole-response deadline
(``deadline``), when and how long to wait before trying again (``retry``), what a
transport failure was (``causes``), and the one client for OpenAI-compatible
endpoints (``openai_client``). It imports nothing from the rest of ragtune but
``errors`` and ``url_options``."""
