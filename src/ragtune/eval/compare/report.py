"""The comparison's reports, written from ``results.json`` alone.

- ``report.md``: the article's five rows (cost, resources, data, infrastructure,
  expertise) per arm, filled with what was measured, then quality (with bootstrap 95%
  intervals), latency and freshness rows;
- ``report.html``: the same tables, plots embedded as base64 PNG (quality against
  preparation cost, quality per arm with intervals, training loss curves) and every
  question with each arm's answer. Self-contained: no script, no external resource;
  all text is escaped.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from ragtune.atomic import write_text_atomic
from ragtune.eval.report import markdown_table

# What each route needs besides compute, for the "infrastructure" and "expertise"
# rows: fixed by how the route works, not measured.
INFRASTRUCTURE = {
    "base": "the model file only",
    "rag": "an index (embedder + vector store) beside the model; sync to stay fresh",
    "lora": "a training run (PyTorch, PEFT); an adapter to serve with the model",
    "lora+rag": "both: a training run and an index",
    "lora-aug": "as lora, plus the restated records (generated offline)",
    "lora-aug+rag": "as lora-aug, plus an index",
    "pretrain": "a training run from scratch; its tokenizer and model to serve",
}
EXPERTISE = {
    "base": "none",
    "rag": "low: ingest, then ask",
    "lora": "medium: a recipe, steps and learning rate to choose",
    "lora+rag": "medium: both of the above",
    "lora-aug": "medium-high: a recipe, and augmentation that keeps the test questions out",
    "lora-aug+rag": "medium-high: both of the above",
    "pretrain": "high: model size, tokenizer, schedule",
}
DATA = {
    "base": "none",
    "rag": "the documents as they are",
    "lora": "the documents as training text",
    "lora+rag": "the documents, twice: training text and index",
    "lora-aug": "the documents, plus each fact restated as several question/answer records",
    "lora-aug+rag": "lora-aug's records, and the documents as an index",
    "pretrain": "the documents as the whole training corpus",
}


def write_reports(results: dict[str, Any], output: Path) -> None:
    write_text_atomic(output / "report.md", markdown_report(results))
    write_text_atomic(output / "report.html", html_report(results))


def _arms(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (route, results["arms"][route]) for route in results["routes"] if route in results["arms"]
    ]


def _interval(value: float | None, interval: Any) -> str:
    if value is None:
        return "n/a"
    if not interval:
        return f"{value:.2f}"
    return f"{value:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The comparison table: one column per arm, one row per measure."""
    arms = _arms(results)
    header = ["", *(route for route, _ in arms)]
    rows: list[list[str]] = []

    def row(name: str, show: Any) -> None:
        rows.append([name, *(show(route, arm) for route, arm in arms)])

    def done(show: Any, explain: bool = False) -> Any:
        """A measured cell; an arm that did not finish says why in the first row only."""

        def cell(route: str, arm: dict[str, Any]) -> str:
            if arm["status"] != "done":
                if not explain:
                    return arm["status"]
                need = arm.get("estimated_need_s")
                extra = f", needs ~{_seconds(need)}" if need else ""
                return f"{arm['status']}: {arm.get('reason', '')}{extra}"
            return str(show(route, arm))

        return cell

    row(
        "cost (preparation wall time, CPU-hours)",
        done(
            lambda _r, a: (
                f"{_seconds(a['preparation']['wall_s'])}, {a['preparation']['cpu_hours']:.4f} CPU-h"
                + _stopped(a)
            ),
            explain=True,
        ),
    )
    row(
        "resources (peak memory, tokens processed)",
        done(
            lambda _r, a: (
                f"{a['preparation']['peak_rss_mb']:.0f} MB, "
                f"{a['preparation']['tokens'] + a.get('answer_tokens', 0):,} tokens"
            )
        ),
    )
    row("data", lambda route, _a: DATA[route])
    row("infrastructure", lambda route, _a: INFRASTRUCTURE[route])
    row("expertise", lambda route, _a: EXPERTISE[route])
    row(
        "quality: contains [95% CI]",
        done(lambda _r, a: _interval(a["scores"]["contains"], a["intervals"]["contains"])),
    )
    row(
        "quality: token F1 [95% CI]",
        done(lambda _r, a: _interval(a["scores"]["f1"], a["intervals"]["f1"])),
    )
    row(
        "abstention on unanswerable [95% CI]",
        done(
            lambda _r, a: _interval(
                a["scores"]["abstention_accuracy"], a["intervals"]["abstention"]
            )
        ),
    )
    row(
        "faithfulness",
        done(
            lambda _r, a: (
                "n/a"
                if a["scores"]["faithfulness"] is None
                else f"{a['scores']['faithfulness']:.2f}"
            )
        ),
    )
    row(
        "latency p50 / p95 per question",
        done(
            lambda _r, a: (
                f"{a['scores']['latency_p50_s']:.2f} s / {a['scores']['latency_p95_s']:.2f} s"
            )
        ),
    )
    row("freshness (time to answer a changed fact)", done(lambda _r, a: _freshness(a)))
    scale = results.get("scale")
    if scale:
        row(f"at scale (estimate): {_scale_label(scale)}", lambda _r, a: _at_scale(a))
    return header, rows


def _stopped(arm: dict[str, Any]) -> str:
    """The mark of an arm cut short by the budget: what it kept."""
    if not arm.get("stopped_at_budget"):
        return ""
    notes = arm.get("notes") or {}
    if "steps_run" in notes:
        return (
            f" (stopped at its budget share: {notes.get('steps')} of "
            f"{notes.get('planned_steps')} planned steps kept)"
        )
    return f" (stopped: the budget ran out; questions not asked: {arm.get('unasked', 0)})"


def _scale_label(scale: dict[str, Any]) -> str:
    price = scale.get("price_per_hour")
    shown = f" at ${price:.2f}/h" if price is not None else ""
    return f"{scale['described']}{shown}, the whole corpus"


def _at_scale(arm: dict[str, Any]) -> str:
    estimate = arm.get("estimate")
    if not estimate:
        return "n/a"
    return str(estimate.get("summary", "n/a"))


def _freshness(arm: dict[str, Any]) -> str:
    fresh = arm.get("freshness")
    if not fresh:
        return "n/a"
    seconds = fresh.get("seconds")
    shown = _seconds(seconds) if seconds is not None else "never"
    if fresh.get("answered_new_fact") is False:
        shown += " (index updated; the answer did not show the new fact)"
    return shown


def markdown_report(results: dict[str, Any]) -> str:
    header, rows = summary_rows(results)
    questions = results["questions"]
    lines = [
        "# ragtune compare",
        "",
        f"Index `{results['index']}`; {questions['answerable']} answerable and "
        f"{questions['unanswerable']} unanswerable questions ({questions['source']}); "
        f"budget {_seconds(results['budget_s'])}, used {_seconds(results.get('elapsed_s'))}.",
        "",
        markdown_table(header, rows),
        "",
        f"Budget rule: {results['budget_rule']}.",
        "",
        "Intervals are percentile-bootstrap 95% intervals over questions (1,000 resamples). "
        "Freshness: RAG is timed editing one fact in a one-page copy of its source, "
        "`sync`, and asking again; fine-tuned arms need a new training run, so their "
        "measured preparation time is shown. Peak memory is the process's high-water "
        "mark when the arm finished.",
        "",
        *(f"- {line}" for line in report_notes(results)),
        "",
    ]
    return "\n".join(lines)


def report_notes(results: dict[str, Any]) -> list[str]:
    """How the questions and the augmented records were made, and the at-scale
    estimate's caveats: one sentence each."""
    notes: list[str] = []
    made = results["questions"].get("generation") or {}
    if made:
        text = f"Questions: {made.get('templated', 0)} templated/cloze from the chunks' sentences"
        llm = made.get("llm")
        if llm:
            dropped = ", ".join(f"{n} {why}" for why, n in llm.get("dropped", {}).items())
            text += (
                f"; {llm['tried']} written by the model ({llm['seconds']:.0f} s), "
                f"{llm['kept']} kept, {llm['tried'] - llm['kept']} dropped"
                + (f" ({dropped})" if dropped else "")
            )
        notes.append(text + ".")
    for route, arm in _arms(results):
        augmentation = (arm.get("notes") or {}).get("augmentation")
        if augmentation:
            notes.append(
                f"{route}: {augmentation['facts']} fact sentences restated as "
                f"{augmentation['records']} training records beside the documents; "
                f"{augmentation['dropped_as_held_out']} left out for holding an evaluation "
                "question"
                + (
                    f"; model-written paraphrases {augmentation['llm_paraphrases_kept']} kept, "
                    f"{augmentation['llm_paraphrases_dropped']} dropped"
                    if augmentation["llm_paraphrases_kept"]
                    or augmentation["llm_paraphrases_dropped"]
                    else ""
                )
                + "."
            )
        if arm.get("stopped_at_budget"):
            notes.append(f"{route}: {arm['notes'].get('stopped', 'stopped at its budget share')}.")
        estimate = arm.get("estimate") or {}
        if estimate.get("note"):
            notes.append(f"{route} at scale: {estimate['note']}.")
    scale = results.get("scale")
    if scale:
        price = scale.get("price_per_hour")
        priced = (
            f"${price:.2f}/h, price from the {scale['price_source']}"
            if price is not None
            else "no price"
        )
        notes.append(
            f"At scale: {scale['described']} ({scale['label']}, {priced}); "
            "training arms priced over the whole corpus as the arm counted its tokens, "
            "times its epochs (`ragtune estimate`)."
        )
    return notes


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, base64 PNG) for each plot; none when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    done = [(route, arm) for route, arm in _arms(results) if arm["status"] == "done"]
    if not done:
        return []
    made: list[tuple[str, str]] = []
    figure, axes = plt.subplots(figsize=(6, 4))
    for route, arm in done:
        cost = max(arm["preparation"]["wall_s"], 0.01)
        quality = arm["scores"]["contains"] or 0.0
        axes.scatter([cost], [quality], s=60)
        axes.annotate(route, (cost, quality), textcoords="offset points", xytext=(6, 4))
    axes.set_xscale("log")
    axes.set_xlabel("preparation wall time (s, log)")
    axes.set_ylabel("contains (answerable questions)")
    axes.set_ylim(-0.05, 1.05)
    made.append(("Quality against preparation cost", _png(figure)))
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(6, 4))
    names = [route for route, _ in done]
    values = [arm["scores"]["contains"] or 0.0 for _, arm in done]
    low = [
        v - (arm["intervals"]["contains"] or (v, v))[0]
        for v, (_, arm) in zip(values, done, strict=True)
    ]
    high = [
        (arm["intervals"]["contains"] or (v, v))[1] - v
        for v, (_, arm) in zip(values, done, strict=True)
    ]
    axes.bar(names, values, yerr=[low, high], capsize=6, color="#4c72b0")
    axes.set_ylabel("contains, 95% bootstrap interval")
    axes.set_ylim(0, 1.05)
    made.append(("Quality per arm", _png(figure)))
    plt.close(figure)

    curves = [(route, arm["notes"].get("loss_history")) for route, arm in done]
    curves = [(route, points) for route, points in curves if points]
    if curves:
        figure, axes = plt.subplots(figsize=(6, 4))
        for route, points in curves:
            axes.plot([p[0] for p in points], [p[1] for p in points], label=route)
        axes.set_xlabel("step")
        axes.set_ylabel("training loss")
        axes.legend()
        made.append(("Training loss", _png(figure)))
        plt.close(figure)
    return made


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 80em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; text-align: left; }
th { background: #f2f2f2; }
td.yes { background: #e6f4e6; } td.no { background: #fbeaea; }
img { max-width: 100%; }
.evidence { color: #555; font-size: 0.9em; }
"""


def html_report(results: dict[str, Any]) -> str:
    e = html.escape
    header, rows = summary_rows(results)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>ragtune compare</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>ragtune compare</h1>",
        f"<p>Index <code>{e(results['index'])}</code>; "
        f"{results['questions']['answerable']} answerable and "
        f"{results['questions']['unanswerable']} unanswerable questions "
        f"({e(str(results['questions']['source']))}); budget {e(_seconds(results['budget_s']))}, "
        f"used {e(_seconds(results.get('elapsed_s')))}.</p>",
        _html_table(header, rows),
        f"<p>Budget rule: {e(results['budget_rule'])}.</p>",
        "<ul>" + "".join(f"<li>{e(line)}</li>" for line in report_notes(results)) + "</ul>",
    ]
    for title, data in plots(results):
        parts.append(f"<h2>{e(title)}</h2>")
        parts.append(f'<img alt="{e(title)}" src="data:image/png;base64,{data}">')
    parts.append("<h2>Every question</h2>")
    parts.append(_questions_table(results))
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _questions_table(results: dict[str, Any]) -> str:
    e = html.escape
    done = [(route, arm) for route, arm in _arms(results) if arm["status"] == "done"]
    if not done:
        return "<p>No arm finished.</p>"
    by_arm = {route: {a["id"]: a for a in arm["answers"]} for route, arm in done}
    first = done[0][1]["answers"]
    head = "<th>question</th><th>gold (evidence)</th>" + "".join(
        f"<th>{e(route)}</th>" for route, _ in done
    )
    items = results["questions"].get("items", {})
    rows = []
    for record in first:
        item = items.get(record["id"], {})
        shown = (
            f"<br><span class='evidence'>{e(item.get('evidence', ''))} "
            f"({e(item.get('source', ''))})</span>"
            if item
            else ""
        )
        cells = [
            f"<td>{e(record['question'])}</td>",
            f"<td>{e(' | '.join(record['golds']))}"
            + ("" if record["answerable"] else " <span class='evidence'>(unanswerable)</span>")
            + shown
            + "</td>",
        ]
        for route, _ in done:
            answer = by_arm[route].get(record["id"])
            if answer is None:
                cells.append("<td></td>")
                continue
            good = answer["contains"] if record["answerable"] else answer["abstained"]
            cited = answer.get("sources") or []
            sources = (
                f"<br><span class='evidence'>from {e(', '.join(cited))}</span>" if cited else ""
            )
            cells.append(
                f"<td class='{'yes' if good else 'no'}'>{e(answer['answer'])}{sources}</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
