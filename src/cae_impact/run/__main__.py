"""``python -m cae_impact.run``: the kernel server and the build's client (what Make runs).

``serve SOCKET`` runs the kernel server (:mod:`cae_impact.run.kernels`), ``run -- COMMAND...``
runs the build with one, ``client -- CLI-ARGS...`` runs one step of :mod:`cae_impact.run.cli`
in a process forked from the server, or here without one. The server's machinery knows nothing
of the command line: it is given :func:`cli_main` to run in its children.
"""

from __future__ import annotations

import sys

from cae_impact.run.kernels import _run_in_server, run_with_server, serve


def cli_main(argv: list[str]) -> int:
    """``cae_impact.run.cli.main(argv)``."""
    # Lazy: a step served by the kernel server never imports the command line in the client
    # (the client starts in 0.07 s; importing cae_impact.run.cli costs 0.25 s more, measured with -X importtime).
    from cae_impact.run import cli

    return cli.main(argv)


def run_command(argv: list[str]) -> int:
    """Run ``cae_impact.run.cli argv`` in a process forked from the server; its exit status.

    The child gets this process's standard streams, working directory and environment. An
    interrupt here (make stopped with Ctrl-C) is passed on to the child. Without a server
    (or if it cannot be reached) the command runs here, as ``python -m cae_impact.run.cli``.
    """
    code = _run_in_server(argv)
    if code is None:
        return cli_main(argv)
    return code


def main(argv: list[str] | None = None) -> int:
    """``serve SOCKET`` | ``run -- COMMAND...`` | ``client -- CLI-ARGS...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "serve":
        serve(argv[1], cli_main)
        return 0
    if argv[:1] == ["client"]:
        return run_command(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    if len(argv) >= 2 and argv[0] == "run":
        command = argv[2:] if argv[1] == "--" else argv[1:]
        return run_with_server(command)
    print("usage: python -m cae_impact.run serve SOCKET | run -- COMMAND... | client -- CLI-ARGS...",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
