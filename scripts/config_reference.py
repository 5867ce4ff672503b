"""Print the config reference (markdown table) from the schema in sngan/config.py; README embeds its output.

Usage: python scripts/config_reference.py
"""

from sngan.config import field_help


def main() -> None:
    print("| key | type | default | meaning |")
    print("|---|---|---|---|")
    for key, type_name, default, help_text in field_help():
        print(f"| `{key}` | {type_name} | `{default!r}` | {help_text.replace('|', ' or ')} |")


if __name__ == "__main__":
    main()
