"""`python -m node …`: the CLI. With TITLECHAIN_PROFILE=DIR set, the process runs under cProfile
and writes DIR/<pid>.prof when it exits (a node stopped with SIGTERM exits cleanly, so its profile
is complete): how the consortium benchmark's figures were broken down (docs/performance.md)."""

import os

from node.cli.main import main

_profile_dir = os.environ.get("TITLECHAIN_PROFILE")
if _profile_dir:
    import cProfile

    _prof = cProfile.Profile()
    try:
        _prof.runcall(main)
    finally:
        os.makedirs(_profile_dir, exist_ok=True)
        _prof.dump_stats(os.path.join(_profile_dir, f"{os.getpid()}.prof"))
else:
    main()
