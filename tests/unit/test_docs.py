"""README.md and docs/*.md are true to the code, and stay so.

- Every relative link resolves, and every ``#anchor`` names a heading of its target (GitHub's slugs); so does
  every pointer from the code into the docs (a docstring's ``docs/operations.md#the-cli``).
- Every command in a shell code block (```bash, sh, shell; a line read as the shell reads it: ``|``, ``&&``,
  ``||`` and ``;`` separate commands, redirections are not arguments) is checked against the code: a
  ``license-notifications`` line parses with the CLI's own parser; ``make X`` names a target (and only
  variables its recipe reads); ``python -m M`` and the project's scripts name a module that exists, with options
  it declares; a pytest line names test paths that exist and declared markers; an ``export`` names a setting.
- Every such command is either exercised (the same program and options appear together in a test,
  ``devstack/demo.py`` or ``.ci/run``, or the target is one that CI's ``make test`` runs) or says why not with a
  trailing ``# not run here: <why>``.
- No figure without its command: a paragraph or table holding a measured number (a decimal with a unit, or a
  ratio such as 1.36x) names the command that produced it, in the block itself or, for a table, in the
  paragraph just above it.
- What the code exposes is documented: every setting, stack parameter and output, CLI subcommand, make target,
  Braze trigger property, top-level directory and package directory.

Each check is a function returning its problems; the ``test_the_checks_*`` tests feed them broken docs, so a
check that could not fail would fail its own test.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fnmatch
import importlib.util
import io
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from license_notifications.cli import build_parser
from license_notifications.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS_DIR = ROOT / "docs"
MAX_README_LINES = 150
SHELL_FENCES = {"bash", "sh", "shell", "console"}
NOT_RUN = re.compile(r"^not run here: \S")
# Where a command counts as exercised. This file is left out: its own strings must not vouch for the docs.
WITNESS_FILES = [
    *(p for p in sorted((ROOT / "tests").rglob("*.py")) if p.resolve() != Path(__file__).resolve()),
    ROOT / "devstack" / "demo.py",
    ROOT / ".ci" / "run",
]


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS_DIR.glob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ----------------------------------------------------------------------------------------------- markdown


@dataclass(frozen=True)
class Fence:
    info: str
    line: int  # 1-based line of the opening fence
    body: list[str]


def fences(text: str) -> list[Fence]:
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = re.match(r"^\s*(```+|~~~+)\s*([\w-]*)", lines[i])
        if not opening:
            i += 1
            continue
        marker, start, body = opening.group(1), i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i])
            i += 1
        found.append(Fence(opening.group(2).lower(), start + 1, body))
        i += 1
    return found


def prose_lines(text: str) -> list[str]:
    """The text with every fenced block blanked (line numbers kept)."""
    lines, inside, marker = text.splitlines(), False, ""
    out = []
    for line in lines:
        opening = re.match(r"^\s*(```+|~~~+)", line)
        if not inside and opening:
            inside, marker = True, opening.group(1)
            out.append("")
        elif inside:
            if line.strip().startswith(marker):
                inside = False
            out.append("")
        else:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation other than - and _ removed,
    spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for line in prose_lines(text):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            result.add(base if n == 0 else f"{base}-{n}")
    return result


LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def link_problems(path: Path, text: str) -> list[str]:
    problems = []
    for number, line in enumerate(prose_lines(text), 1):
        line = re.sub(r"`[^`]*`", "", line)
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            where = f"{rel(path)}:{number}: {target}"
            if not file_part:
                if anchor not in anchors(text):
                    problems.append(f"{where}: no heading with the anchor #{anchor}")
                continue
            dest = (path.parent / file_part).resolve()
            if not dest.is_relative_to(ROOT) or not dest.exists():
                problems.append(f"{where}: no such file in the repository")
            elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest.read_text())):
                problems.append(f"{where}: no heading with the anchor #{anchor}")
    return problems


# A pointer from the code into the docs (a docstring's or comment's ``docs/operations.md#the-cli``).
POINTER = re.compile(r"(?<![\w/.-])((?:README|docs/[\w-]+)\.md)(?:#([\w-]+))?")
POINTING_FILES = ["layers", "functions", "devstack", "perf", "tests", "scripts", ".ci", "Makefile", "template.yaml"]


def pointer_problems(name: str, text: str) -> list[str]:
    """Each ``docs/X.md#anchor`` (or ``README.md#anchor``) the text names is a file with that heading."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        for target, anchor in POINTER.findall(line):
            dest = ROOT / target
            if not dest.exists():
                problems.append(f"{name}:{number}: {target}: no such file in the repository")
            elif anchor and anchor not in anchors(dest.read_text()):
                problems.append(f"{name}:{number}: {target}#{anchor}: no heading with that anchor")
    return problems


def pointing_sources() -> list[Path]:
    found = []
    for entry in POINTING_FILES:
        path = ROOT / entry
        found += sorted(p for p in path.rglob("*") if p.suffix in (".py", ".yaml", "")) if path.is_dir() else [path]
    return [p for p in found if p.is_file() and p.resolve() != Path(__file__).resolve()]


# ----------------------------------------------------------------------------------------------- the code


@cache
def makefile() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(target -> prerequisites, target -> recipe lines) of the Makefile's named targets."""
    prereqs: dict[str, list[str]] = {}
    recipes: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        rule = re.match(r"^([a-z][\w-]*):(?!=)([^#]*)", line)
        if rule:
            current = rule.group(1)
            prereqs[current] = rule.group(2).split("##")[0].split()
            recipes[current] = []
        elif line.startswith("\t") and current:
            recipes[current].append(line.strip())
        elif line.strip() and not line.startswith("\t"):
            current = None
    return prereqs, recipes


@cache
def ci_targets() -> frozenset[str]:
    """The targets CI runs (``.ci/run``'s ``make X``) and every target they depend on."""
    prereqs, _ = makefile()
    todo = re.findall(r"^\s*make\s+([\w-]+)", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
    done: set[str] = set()
    while todo:
        target = todo.pop()
        if target in prereqs and target not in done:
            done.add(target)
            todo.extend(prereqs[target])
    return frozenset(done)


@cache
def scripts() -> dict[str, str]:
    """console script -> module (pyproject's [project.scripts])."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {name: entry.split(":")[0] for name, entry in data["project"]["scripts"].items()}


@cache
def pytest_markers() -> frozenset[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return frozenset(m.split(":")[0].strip() for m in data["tool"]["pytest"]["ini_options"]["markers"])


def module_file(module: str) -> Path | None:
    for candidate in (ROOT / f"{module.replace('.', '/')}.py", ROOT / module.replace(".", "/") / "__main__.py"):
        if candidate.exists():
            return candidate
    if module.startswith("license_notifications."):
        return module_file("layers/shared/" + module.replace(".", "/"))
    return None


@cache
def cli_subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@cache
def witness_texts() -> dict[Path, str]:
    return {path: path.read_text() for path in WITNESS_FILES if path.exists()}


def quoted(token: str) -> re.Pattern[str]:
    return re.compile(rf"""["']{re.escape(token)}["']""")


def witnessed(keys: list[re.Pattern[str]], *, files: list[Path] | None = None) -> bool:
    """Whether one file holds every key: the program and each option the command uses."""
    texts = witness_texts()
    return any(all(key.search(texts[p]) for key in keys) for p in (files or list(texts)))


def options_of(tokens: list[str]) -> list[str]:
    return [t.split("=")[0] for t in tokens if t.startswith("--")]


# ------------------------------------------------------------------------------------------------ commands


@dataclass(frozen=True)
class Command:
    path: Path
    line: int
    code: str
    comment: str

    @property
    def where(self) -> str:
        return f"{rel(self.path)}:{self.line}: {self.code}"


def split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of a shell line: the first # outside quotes that starts a word begins the comment."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def commands(path: Path, text: str) -> Iterator[Command]:
    for fence in fences(text):
        if fence.info not in SHELL_FENCES:
            continue
        pending, start = "", 0
        for offset, raw in enumerate(fence.body, 1):
            if not pending:
                start = fence.line + offset
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            code, comment = split_comment(pending + raw)
            pending = ""
            if code.strip():
                yield Command(path, start, code.strip(), comment)
        if pending.strip():  # a continuation the block never finished is still a command, checked as one
            code, comment = split_comment(pending)
            yield Command(path, start, code.strip(), comment)


# Shell syntax that is not a program's argument: the operators between simple commands, and redirections
# (``> f``, ``2> f``, ``2>&1``, ``< f``, with or without a space before the target).
CONTROL_OPERATORS = {"|", "||", "&&", ";", "&"}
REDIRECTION = re.compile(r"^\d*(?:>>|>&|<&|&>|>|<)(.*)$")


def simple_commands(tokens: list[str]) -> list[list[str]]:
    """The simple commands of a shell line (split at ``|``, ``&&``, ``||``, ``;``), redirections removed."""
    found: list[list[str]] = [[]]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        redirection = REDIRECTION.match(token)
        if token in CONTROL_OPERATORS:
            found.append([])
        elif redirection:
            i += 0 if redirection.group(1) else 1  # the target is the next token unless attached
        else:
            found[-1].append(token)
        i += 1
    return [c for c in found if c]


def command_problems(command: Command) -> list[str]:
    """What is wrong with one shell line: each of its commands checked against the code, then whether the line
    is run somewhere (every command of it exercised) or says why not."""
    try:
        tokens = shlex.split(command.code)
    except ValueError as exc:
        return [f"{command.where}: not a shell command ({exc})"]
    problems, exercised = [], True
    for simple in simple_commands(tokens):
        found, ran = simple_command_problems(simple)
        problems += [f"{command.where}: {p}" for p in found]
        exercised = exercised and ran
    if not exercised and not NOT_RUN.match(command.comment):
        problems.append(
            f"{command.where}: run by no test, the demo or CI: exercise it, or end the line with "
            "'# not run here: <why>'"
        )
    return problems


def simple_command_problems(tokens: list[str]) -> tuple[list[str], bool]:
    """(what is wrong with one simple command, whether it is exercised)."""
    if tokens and tokens[0] == "export":
        tokens = tokens[1:]
    env = []
    while tokens and re.match(r"^[A-Za-z_]\w*=", tokens[0]):
        env.append(tokens.pop(0).split("=")[0])
    if not tokens:  # assignments only: each must be a setting the service reads
        settings = {f.alias for f in Settings.model_fields.values()}
        unknown = [n for n in env if n not in settings and not n.startswith(("AWS_", "POWERTOOLS_"))]
        return [f"{n} is not a setting (config.Settings)" for n in unknown], True
    program, args = Path(tokens[0]).name, tokens[1:]
    if program == "license-notifications":
        problems, keys = cli_problems(args), [quoted(args[0]) if args else quoted("")]
        keys += [quoted(o) for o in options_of(args)]
        exercised = witnessed(keys)
    elif program == "make":
        problems, exercised = make_problems(args)
    elif program in scripts() or (program.startswith("python") and args[:1] == ["-m"]):
        module, args = (scripts()[program], args) if program in scripts() else (args[1], args[2:])
        problems = module_problems(module, args)
        exercised = witnessed([re.compile(re.escape(module)), *(quoted(o) for o in options_of(args))],
                              files=[p for p in WITNESS_FILES if p.name != "demo.py"])  # fmt: skip
    elif program == "pytest":
        problems, exercised = pytest_problems(args), True  # it runs a selection of what `make test` runs
    else:
        problems, exercised = [], False
    return problems, exercised


def cli_problems(args: list[str]) -> list[str]:
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser().parse_args(args)
    except SystemExit:
        return [f"the CLI's parser refuses it: {stderr.getvalue().strip().splitlines()[-1]}"]
    return []


def make_problems(args: list[str]) -> tuple[list[str], bool]:
    prereqs, recipes = makefile()
    targets = [a for a in args if "=" not in a and not a.startswith("-")]
    variables = dict(a.split("=", 1) for a in args if "=" in a)
    if len(targets) != 1:
        return [f"one make target expected, got {targets}"], False
    target = targets[0]
    if target not in prereqs:
        return [f"no make target {target!r} in the Makefile"], False
    recipe = " ".join(recipes[target])
    problems = [f"make {target} does not read {name}" for name in variables if f"$({name})" not in recipe]
    if target in ci_targets():
        return problems, True
    extra = [t for value in variables.values() for t in shlex.split(value)]
    run = re.search(r"-m\s+([\w.]+)", recipe)
    script = next((name for name in scripts() if re.search(rf"/{re.escape(name)}\b", recipe)), None)
    module = run.group(1) if run else scripts()[script] if script else None
    if module:
        problems += module_problems(module, extra)
        keys = [re.compile(re.escape(module)), *(quoted(o) for o in options_of(extra))]
        return problems, witnessed(keys, files=[p for p in WITNESS_FILES if p.name != "demo.py"])
    if re.search(r"\bpytest\b", recipe):
        return problems, True  # a selection of the suite `make test` runs
    return problems, False


def module_problems(module: str, args: list[str]) -> list[str]:
    source = module_file(module)
    if source is None:  # not the project's own: the standard library's (e.g. compileall), or nothing
        return [] if importlib.util.find_spec(module) else [f"no module {module}"]
    text = source.read_text()
    return [f"{module} has no option {o}" for o in options_of(args) if not quoted(o).search(text)]


def pytest_problems(args: list[str]) -> list[str]:
    problems, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("-k", "-m"):
            if arg == "-m":
                words = set(re.findall(r"\w+", args[i + 1])) - {"not", "and", "or"}
                problems += [f"no pytest marker {w!r} (pyproject.toml)" for w in sorted(words - pytest_markers())]
            i += 2
            continue
        if not arg.startswith("-") and not (ROOT / arg.split("::")[0]).exists():
            problems.append(f"no test path {arg}")
        i += 1
    return problems


# ---------------------------------------------------------------------------------- commands in prose


def mentioned_cli_problems(path: Path, text: str) -> list[str]:
    """A ``license-notifications SUB ...`` in a code span or a text block (a synopsis, brackets allowed) names
    a real subcommand, and only options it has."""
    spans = [(n, s) for n, line in enumerate(prose_lines(text), 1) for s in re.findall(r"`([^`]+)`", line)]
    spans += [(f.line + i, line) for f in fences(text) if f.info in ("text", "") for i, line in enumerate(f.body, 1)]
    problems = []
    for number, span in spans:
        found = re.search(r"(?:^|/)license-notifications\s+([a-z][\w-]*)(.*)", span)
        if not found:
            continue
        sub, rest = found.group(1), found.group(2)
        parser = cli_subparsers().get(sub)
        if parser is None:
            problems.append(f"{rel(path)}:{number}: no CLI subcommand {sub!r}")
            continue
        for option in re.findall(r"--[\w-]+", rest):
            if option not in parser._option_string_actions:
                problems.append(f"{rel(path)}:{number}: license-notifications {sub} has no option {option}")
    for number, line in enumerate(prose_lines(text), 1):
        for target in re.findall(r"`make ([\w-]+)", line):
            if target not in makefile()[0]:
                problems.append(f"{rel(path)}:{number}: no make target {target!r}")
    return problems


# ---------------------------------------------------------------------------------------------- figures

# A measured number: a decimal with a unit (20.7 s, 0.18 ms, 5.6 min, +0.11 MiB) or a ratio (1.36x). A value
# computed in the text (`= 0.18 s`) is not a measurement.
FIGURE = re.compile(r"(?<![=\w.])(?<!= )\d[\d,]*\.\d+\s?(?:ms|s|min|MiB|x)\b|(?<![\w.])\d+(?:\.\d+)?x\b")
PRODUCER = re.compile(r"`((?:make|python -m|\.venv/bin/python -m)\s[^`]+)`")


def blocks(text: str) -> Iterator[tuple[int, str, bool]]:
    """(first line, text, is a table) of each paragraph, list or table outside code blocks."""
    current: list[str] = []
    start = 0
    for number, line in enumerate([*prose_lines(text), ""], 1):
        is_table = line.lstrip().startswith("|")
        if current and (not line.strip() or is_table != current[0].lstrip().startswith("|")):
            yield start, "\n".join(current), current[0].lstrip().startswith("|")
            current = []
        if line.strip():
            if not current:
                start = number
            current.append(line)


def producer_ok(span: str) -> bool:
    tokens = shlex.split(span)
    if tokens[0] == "make":
        return not make_problems(tokens[1:])[0]
    module, args = tokens[2], tokens[3:]
    return not module_problems(module, args)


def figure_problems(path: Path, text: str) -> list[str]:
    problems = []
    previous = ""
    for number, block, is_table in blocks(text):
        figures = FIGURE.findall(re.sub(r"`[^`]*`", "", block))
        context = block + ("\n" + previous if is_table else "")
        producers = [p for p in PRODUCER.findall(context) if producer_ok(p)]
        if figures and not producers:
            problems.append(
                f"{rel(path)}:{number}: figure(s) {', '.join(figures[:3])} without the command that produced them"
            )
        previous = block
    return problems


# ------------------------------------------------------------------------------------------ completeness


def template_section(name: str) -> list[str]:
    text = (ROOT / "template.yaml").read_text()
    section = re.search(rf"^{name}:\n(.*?)(?=^\S|\Z)", text, re.MULTILINE | re.DOTALL)
    assert section, name
    return re.findall(r"^  (\w+):", section.group(1), re.MULTILINE)


def trigger_properties() -> set[str]:
    """Keys of every dict literal the jobs pass as ``trigger_properties=`` or ``attributes=``, or return from a
    ``*properties`` method, and of the dicts a ``**method(...)`` in them splices in (the dict literals any job
    method of that name returns, e.g. ``day_count``): what a Braze campaign's template can use."""
    trees = [ast.parse(p.read_text()) for p in sorted((ROOT / "layers/shared/license_notifications/jobs").glob("*.py"))]
    returns: dict[str, list[ast.expr]] = {}
    for node in (n for tree in trees for n in ast.walk(tree)):
        if isinstance(node, ast.FunctionDef):
            returns.setdefault(node.name, []).extend(
                n.value for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None
            )

    def keys_of(d: ast.expr, seen: frozenset[str] = frozenset()) -> set[str]:
        if not isinstance(d, ast.Dict):
            return set()
        found = {k.value for k in d.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        for key, value in zip(d.keys, d.values, strict=True):
            if key is None and isinstance(value, ast.Call):  # **self.day_count(plan)
                name = getattr(value.func, "attr", getattr(value.func, "id", None))
                if name and name not in seen:
                    found |= {k for r in returns.get(name, []) for k in keys_of(r, seen | {name})}
        return found

    keys: set[str] = set()
    for node in (n for tree in trees for n in ast.walk(tree)):
        dicts = []
        if isinstance(node, ast.keyword) and node.arg in ("trigger_properties", "attributes"):
            dicts.append(node.value)
        if isinstance(node, ast.FunctionDef) and node.name.endswith("properties"):
            dicts += [n.value for n in ast.walk(node) if isinstance(n, ast.Return)]
        for d in dicts:
            keys |= keys_of(d)
    return keys


def missing(names: set[str] | list[str], text: str) -> list[str]:
    return sorted(n for n in set(names) if f"`{n}`" not in text and not re.search(rf"`[^`]*\b{re.escape(n)}\b", text))


# ================================================================================================= tests


@pytest.fixture(scope="module")
def docs() -> dict[Path, str]:
    return {path: path.read_text() for path in doc_files()}


def test_the_docs_are_in_their_places():
    names = {p.name for p in DOCS_DIR.glob("*.md")}
    assert {"operations.md", "design.md", "braze.md", "development.md"} <= names


def test_every_link_and_anchor_resolves(docs):
    assert [p for path, text in docs.items() for p in link_problems(path, text)] == []


def test_every_command_parses_and_is_run_somewhere_or_says_why_not(docs):
    found = [c for path, text in docs.items() for c in commands(path, text)]
    assert len(found) >= 20, "the shell blocks were not read"
    assert [p for c in found for p in command_problems(c)] == []


def test_every_pointer_from_the_code_into_the_docs_resolves():
    sources = pointing_sources()
    assert any(p.name == "cli.py" for p in sources), "the code was not read"
    assert [p for path in sources for p in pointer_problems(rel(path), path.read_text(errors="replace"))] == []


def test_commands_named_in_prose_exist(docs):
    assert [p for path, text in docs.items() for p in mentioned_cli_problems(path, text)] == []


def test_no_figure_without_the_command_that_produced_it(docs):
    assert [p for path, text in docs.items() for p in figure_problems(path, text)] == []


def test_the_readme_is_for_the_newcomer(docs):
    text = docs[README]
    assert len(text.splitlines()) <= MAX_README_LINES
    shell = [c.code for c in commands(README, text)]
    assert shell[:2] == ["make demo", "make test"], "the two commands come first"
    assert "Each does all of its own set-up on a fresh machine" in text
    assert "`.ci/run`" in text
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
    assert "```mermaid" in text
    for doc in ("operations", "design", "braze", "development"):
        assert f"(docs/{doc}.md)" in text


def test_the_layout_table_names_every_directory(docs):
    text = docs[README]
    layout = text[text.index("## Layout") :]
    ignored = [line.strip().strip("/") for line in (ROOT / ".gitignore").read_text().splitlines() if line.strip()]
    top = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir()
        and not any(fnmatch.fnmatch(p.name, pattern) for pattern in ignored)
        and (p.name == ".ci" or not p.name.startswith("."))
    }
    assert [d for d in sorted(top) if f"`{d}/" not in layout] == []
    package = ROOT / "layers/shared/license_notifications"
    subpackages = {p.name for p in package.iterdir() if (p / "__init__.py").exists()}
    assert [d for d in sorted(subpackages) if f"`.../{d}/`" not in layout] == []


def test_every_setting_parameter_and_output_is_in_the_operations_guide(docs):
    text = docs[DOCS_DIR / "operations.md"]
    assert missing({f.alias for f in Settings.model_fields.values() if f.alias}, text) == []
    assert missing(template_section("Parameters"), text) == []
    assert missing(template_section("Outputs"), text) == []
    assert [s for s in cli_subparsers() if f"license-notifications {s}" not in text] == []


def test_every_make_target_is_documented(docs):
    text = "\n".join(docs.values())
    assert [t for t in makefile()[0] if f"make {t}" not in text] == []


def test_every_trigger_property_is_in_the_braze_guide(docs):
    properties = trigger_properties()
    assert {"license_uuid", "admin_portal_url", "user_name"} <= properties, "the jobs' payloads were not read"
    # spliced in with **self.day_count(plan): the check follows such a call to the dicts the method returns
    assert {"days_until_expiration", "days_since_expiration"} <= properties, "a **method() splice was not followed"
    assert missing(properties, docs[DOCS_DIR / "braze.md"]) == []


# ---------------------------------------------------------------------- the checks can fail (broken docs)

BROKEN = """# Guide

## Real heading

See [this](#real-heading), [that](#no-such-heading), [file](no-such-file.md) and [ok](../README.md).

```bash
license-notifications report --no-such-option
license-notifications bogus-command
make no-such-target
make soak BOGUS_ARGS=--short
python -m perf.no_such_module
.venv/bin/python -m perf.soak --no-such-flag
.venv/bin/pytest tests/unit/test_no_such_file.py -m "not no_such_marker"
export NO_SUCH_SETTING=1
aws s3 ls
make benchmark
.venv/bin/license-notifications check   # not run here: because
.venv/bin/license-notifications report --piped-option 2> report.log | sort
make test && make no-such-target-after-and
make test && aws s3 ls s3://after-and
echo continued \\
```

Measured 3.14 s and 2.5x faster.

Produced by `make no-such-target`: 1.5 ms.
"""


def broken_problems() -> list[str]:
    path = DOCS_DIR / "broken.md"
    return [
        *link_problems(path, BROKEN),
        *(p for c in commands(path, BROKEN) for p in command_problems(c)),
        *figure_problems(path, BROKEN),
    ]


def test_the_checks_catch_broken_links_and_anchors():
    problems = "\n".join(broken_problems())
    assert "#no-such-heading" in problems
    assert "no-such-file.md: no such file" in problems
    assert "#real-heading" not in problems
    assert "README.md" not in problems


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("license-notifications report --no-such-option", "the CLI's parser refuses it"),
        ("license-notifications bogus-command", "the CLI's parser refuses it"),
        ("make no-such-target", "no make target 'no-such-target'"),
        ("make soak BOGUS_ARGS=--short", "make soak does not read BOGUS_ARGS"),
        ("python -m perf.no_such_module", "no module perf.no_such_module"),
        (".venv/bin/python -m perf.soak --no-such-flag", "perf.soak has no option --no-such-flag"),
        (".venv/bin/pytest tests/unit/test_no_such_file.py", "no test path tests/unit/test_no_such_file.py"),
        (".venv/bin/pytest tests/unit/test_no_such_file.py", "no pytest marker 'no_such_marker'"),
        ("export NO_SUCH_SETTING=1", "NO_SUCH_SETTING is not a setting"),
        ("aws s3 ls", "run by no test, the demo or CI"),
        ("make benchmark", "run by no test, the demo or CI"),
        # shell syntax: redirections and pipes are not the program's arguments, but what stands beside them is
        # checked, and every command of a list must be run somewhere; an unfinished continuation is a command
        (".venv/bin/license-notifications report --piped-option", "the CLI's parser refuses it"),
        ("make test && make no-such-target-after-and", "no make target 'no-such-target-after-and'"),
        ("make test && aws s3 ls s3://after-and", "run by no test, the demo or CI"),
        ("echo continued", "run by no test, the demo or CI"),
    ],
)
def test_the_checks_catch_a_bad_command(line, expected):
    mine = [p for p in broken_problems() if p.split(": ", 1)[1].startswith(line)]
    assert any(expected in p for p in mine), mine


def test_a_note_excuses_only_the_run_not_a_wrong_command():
    problems = broken_problems()
    assert not [p for p in problems if ".venv/bin/license-notifications check" in p]
    noted = Command(DOCS_DIR / "x.md", 1, "license-notifications nope", "not run here: because")
    assert any("the CLI's parser refuses it" in p for p in command_problems(noted))


def test_exercised_commands_need_no_note():
    for code in ("license-notifications report --run-id r", "make test", "make soak SOAK_ARGS='--short --seed 7'",
                 "license-notifications-demo --now 2026-03-01T09:00:00Z", "license-notifications redrive --dry-run",
                 "license-notifications report --run-id r > report.txt 2>&1", "make test && make unit",
                 "export LEDGER_TABLE_NAME=t && license-notifications report --run-id r 2>report.log"):  # fmt: skip
        assert command_problems(Command(DOCS_DIR / "x.md", 1, code, "")) == [], code


def test_the_checks_catch_a_figure_without_its_command():
    problems = [p for p in broken_problems() if "without the command" in p]
    assert len(problems) == 2, problems  # the bare figures, and the one whose "command" is no target
    assert figure_problems(DOCS_DIR / "x.md", "Produced by `make soak`: 20.7 s.\n") == []
    assert figure_problems(DOCS_DIR / "x.md", "3600 x 5 / 100,000 = 0.18 s with the defaults.\n") == []


def test_the_checks_catch_a_pointer_into_the_docs_that_does_not_resolve():
    text = "see docs/operations.md#the-cli, docs/operations.md#no-such-section and docs/no-such-guide.md\n"
    problems = "\n".join(pointer_problems("x.py", text))
    assert "docs/operations.md#no-such-section: no heading" in problems
    assert "docs/no-such-guide.md: no such file" in problems
    assert "#the-cli" not in problems


def test_the_checks_catch_an_undocumented_name():
    assert missing({"BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN"}, "`BRAZE_API_URL`") == [
        "BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN"
    ]


def test_slugs_follow_github():
    assert slug("check: the preflight") == "check-the-preflight"
    assert slug("What a send's outcome means") == "what-a-sends-outcome-means"
    assert slug("Soak: faults on purpose") == "soak-faults-on-purpose"
    assert slug("The `ledger_cost` tool (perf)") == "the-ledger_cost-tool-perf"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}
