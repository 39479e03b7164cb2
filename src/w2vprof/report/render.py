"""Table renderers: a `Table` in, text out (CSV, Markdown, LaTeX, HTML, or Rich's terminal drawing).

Nothing here measures, reads files or prints; the CLI writes what these return.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

__all__ = ["Table", "table_csv", "table_markdown", "table_latex", "table_html", "table_terminal"]


@dataclass
class Table:
    """A table as strings, already formatted with units in the column names; every renderer takes one."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


def table_csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return buffer.getvalue()


def table_markdown(table: Table) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"**{table.title}**", "", "| " + " | ".join(cell(c) for c in table.columns) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(table.columns))) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    if table.caption:
        lines += ["", table.caption]
    return "\n".join(lines) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(text: str) -> str:
    # One pass over the characters, so the escapes themselves are never escaped again.
    return "".join(_LATEX.get(char, char) for char in text)


def table_latex(table: Table) -> str:
    """A booktabs-free tabular (\\hline only), so it compiles in any paper template."""
    spec = "l" + "r" * (len(table.columns) - 1)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_escape(table.title)}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\hline",
             " & ".join(_latex_escape(c) for c in table.columns) + r" \\", r"\hline"]
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
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    caption = f"<p class='caption'>{escape(table.caption)}</p>" if table.caption else ""
    return f"<h3>{escape(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{caption}\n"


def table_terminal(table: Table, width: int | None = None) -> str:
    """Rich's drawing of the table, as the text a terminal shows (colours only when writing to one)."""
    from rich.console import Console
    from rich.table import Table as RichTable

    rich_table = RichTable(title=table.title, caption=table.caption or None)
    for index, column in enumerate(table.columns):
        rich_table.add_column(column, justify="left" if index == 0 else "right")
    for row in table.rows:
        rich_table.add_row(*row)
    console = Console(width=width) if width else Console()
    if width is None and not console.is_terminal:
        # Piped into a file or a log: draw at full width rather than wrap names at Rich's default 80 columns.
        console = Console(width=240)
    with console.capture() as captured:
        console.print(rich_table)
    return captured.get()
