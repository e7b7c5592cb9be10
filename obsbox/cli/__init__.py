"""The obsbox command line: placeholder until the CLI lands."""


def main() -> None:
    raise SystemExit("obsbox: the CLI is not built yet")
