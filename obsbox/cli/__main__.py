"""`python -m obsbox.cli` — the same as the `obsbox` command."""

from obsbox.cli import main

main()
