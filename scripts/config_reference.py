"""Print the config reference (markdown table) from the schema in sngan/config.py; docs/config.md embeds its output.

Usage: python scripts/config_reference.py
"""

from sngan.config import field_help


def esc(text: str) -> str:
    """A table cell's text with `|` escaped (GitHub tables need it even inside code spans): formulas such as
    ||W^T W - I||_F^2 stay whole instead of splitting the row."""
    return text.replace("|", "\\|")


def main() -> None:
    print("| key | type | default | meaning |")
    print("|---|---|---|---|")
    for key, type_name, default, help_text in field_help():
        print(f"| `{key}` | {esc(type_name)} | `{esc(repr(default))}` | {esc(help_text)} |")


if __name__ == "__main__":
    main()
