"""Table renderers: a `Table` in, text out (CSV, Markdown, LaTeX, HTML, or Rich's terminal drawing).

Nothing here measures, reads files or prints; the CLI writes what these return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Union

from w2vprof.files import csv_text

__all__ = [
    "Column",
    "headings",
    "Table",
    "table_csv",
    "table_markdown",
    "table_latex",
    "table_html",
    "table_terminal",
    "tables_terminal",
]

#: Width of a table drawn for a file or a pipe: wide enough that names are not wrapped.
PLAIN_WIDTH = 240


@dataclass(frozen=True)
class Column:
    """A column's name and the unit its cells are in: a table shows it as `name (unit)` ("params (M)")."""

    name: str
    unit: str = ""

    def __str__(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name


def headings(*columns: Union[str, Column]) -> list[str]:
    """Column names as a table shows them: a `Column` with its unit in brackets, a plain name as it is."""
    return [str(column) for column in columns]


@dataclass
class Table:
    """A table as strings, already formatted, with units in the column names; every renderer takes one.

    `columns` are the names as shown, units included (`headings` writes them from `Column`s).

    `align` has one letter per column, l(eft) or r(ight) (default: the first column left, numbers right).
    `emphasis` holds the indexes of rows to stand out (a total): bold on a terminal, in Markdown and HTML.
    `show_header` False draws a key-value table without its column names (the names stay in CSV).
    """

    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    align: str = ""
    emphasis: frozenset[int] = field(default_factory=frozenset)
    show_header: bool = True

    def alignment(self) -> str:
        return self.align or "l" + "r" * (len(self.columns) - 1)


def table_csv(table: Table) -> str:
    return csv_text(table.rows, table.columns)


def table_markdown(table: Table) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    def row_text(index: int, row: list[str]) -> str:
        bold = "**" if index in table.emphasis else ""
        return "| " + " | ".join(f"{bold}{cell(c)}{bold}" if c else c for c in row) + " |"

    lines = [
        f"**{table.title}**",
        "",
        "| " + " | ".join(cell(c) for c in table.columns) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in table.alignment()) + "|",
    ]
    lines += [row_text(index, row) for index, row in enumerate(table.rows)]
    if table.caption:
        lines += ["", table.caption]
    return "\n".join(lines) + "\n"


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "_": r"\_",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    # One pass over the characters, so the escapes themselves are never escaped again.
    return "".join(_LATEX.get(char, char) for char in text)


def table_latex(table: Table) -> str:
    """A booktabs-free tabular (\\hline only), so it compiles in any paper template."""
    spec = table.alignment()
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(table.title)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\hline",
        " & ".join(_latex_escape(c) for c in table.columns) + r" \\",
        r"\hline",
    ]
    lines += [" & ".join(_latex_escape(cell) for cell in row) + r" \\" for row in table.rows]
    lines += [r"\hline", r"\end{tabular}"]
    if table.caption:
        # \par, not \\: after the tabular LaTeX is in vertical mode, where \\ is "no line here to end"
        lines += [r"\par\smallskip", rf"{{\footnotesize {_latex_escape(table.caption)}\par}}"]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


def table_html(table: Table) -> str:
    from html import escape

    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = "".join(
        ("<tr style='font-weight:bold'>" if index in table.emphasis else "<tr>")
        + "".join(f"<td>{escape(cell)}</td>" for cell in row)
        + "</tr>"
        for index, row in enumerate(table.rows)
    )
    caption = f"<p class='caption'>{escape(table.caption)}</p>" if table.caption else ""
    return (
        f"<h3>{escape(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{caption}\n"
    )


def table_terminal(table: Table, width: int | None = None, plain: bool = False) -> str:
    """Rich's drawing of the table, as the text a terminal shows.

    Colours only when writing to a terminal; `plain` (for a file): never, and drawn at full width.
    """
    from rich.console import Console
    from rich.table import Table as RichTable

    rich_table = RichTable(title=table.title, caption=table.caption or None, show_header=table.show_header)
    for column, align in zip(table.columns, table.alignment()):
        rich_table.add_column(column, justify="right" if align == "r" else "left")
    for index, row in enumerate(table.rows):
        rich_table.add_row(*row, style="bold" if index in table.emphasis else None)
    if plain:
        console = Console(width=width or PLAIN_WIDTH, color_system=None, force_terminal=False)
    else:
        console = Console(width=width) if width else Console()
        if width is None and not console.is_terminal:
            # Piped into a file or a log: draw at full width rather than wrap names at Rich's default 80 columns.
            console = Console(width=PLAIN_WIDTH)
    with console.capture() as captured:
        console.print(rich_table)
    return captured.get()


def tables_terminal(tables: Iterable[Table], plain: bool = False, notes: Iterable[str] = ()) -> str:
    """Several tables drawn one after the other, then one line per note."""
    return "".join(table_terminal(t, plain=plain) for t in tables) + "".join(f"{note}\n" for note in notes)
