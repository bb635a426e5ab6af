"""`llmft`: one command for the stages installed beside this library. Each stage's wheel registers its command line
under the entry-point group `llmft.commands` (`llmft data ...`, `llmft train-sft ...`, `llmft serve ...`), so a team
that installs only its stage gets only that subcommand; `python -m llmft.<stage>` runs the same function."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, distributions, entry_points

GROUP = "llmft.commands"


def installed_commands() -> dict[str, EntryPoint]:
    """Subcommand name -> entry point, for every installed distribution that registers one."""
    return {point.name: point for point in sorted(entry_points(group=GROUP), key=lambda p: p.name)}


def installed_packages() -> dict[str, str]:
    """llmft distributions installed, with their versions."""
    found = {}
    for dist in distributions():
        name = dist.metadata["Name"] or ""
        if name.lower().startswith("llmft-"):
            found[name] = dist.version
    return dict(sorted(found.items()))


def usage(commands: dict[str, EntryPoint]) -> str:
    lines = ["usage: llmft <command> [arguments]    (llmft <command> --help for its own help)", ""]
    if commands:
        lines.append("commands (one per installed stage):")
        for name, point in commands.items():
            lines.append(f"  {name:<12} {point.value.split(':')[0]}")
    else:
        lines.append(f"no stage is installed: no distribution registers an entry point in the group {GROUP!r}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands = installed_commands()
    if not args or args[0] in ("-h", "--help"):
        print(usage(commands), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        for name, version in installed_packages().items():
            print(f"{name} {version}")
        return 0
    name, rest = args[0], args[1:]
    if name not in commands:
        known = ", ".join(commands) or "none"
        print(f"llmft: error: no command {name!r} (installed: {known}); install its stage's wheel", file=sys.stderr)
        return 2
    result = commands[name].load()(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
