"""The `speechllm` command: one module per command group, each command a plain function
registered here."""

from __future__ import annotations

import sys

import typer

from speechllm.cli import datasets, evaluate, serve, speech, tokens, train

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Speech + LLMs, offline on a CPU. Exit codes: 0 ok, 1 unexpected, "
                       "2 usage, 3 unusable input, 4 model problem, 5 missing dependency, "
                       "6 regression flagged by report --compare.")
app.command("models")(speech.models_cmd)
app.command()(speech.transcribe)
app.command()(speech.speak)
app.command()(speech.chat)
app.command()(datasets.synth)
app.command("import")(datasets.import_cmd)
app.command("eval")(evaluate.eval_cmd)
app.command()(evaluate.report)
app.command()(train.train)

tokens_app = typer.Typer(no_args_is_help=True, help="Discrete audio tokens.")
tokens_app.command("fit")(tokens.fit)
tokens_app.command("train-u2s")(tokens.train_u2s)
tokens_app.command("train-vocoder")(tokens.train_vocoder)
tokens_app.command("encode")(tokens.encode)
tokens_app.command("decode")(tokens.decode)
tokens_app.command("align")(tokens.align)
tokens_app.command("say")(tokens.say)
app.add_typer(tokens_app, name="tokens")

app.command()(serve.serve)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
