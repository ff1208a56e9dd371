"""`python -m evaluations.sandbox`: check that isolation works on this machine (fails closed)."""

from __future__ import annotations

from evaluations.sandbox.harness import SANDBOX_UID
from evaluations.sandbox.run import sandbox


def main() -> None:
    tools = sandbox()
    print(f"sandbox ok: bwrap={tools.bwrap} python={tools.python} uid={SANDBOX_UID}")


if __name__ == "__main__":
    main()
