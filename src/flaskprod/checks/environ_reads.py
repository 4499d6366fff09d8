"""The environment variables the project's code reads, with the default it names for each, and those the config
class the app loads (app.config.from_object) is picked by: what FP-C021, FP-S001's hint and FP-C019 read."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

from .context import Context, ProjectFile, call_name, for_development, variable_read, walk


def for_production(config: str) -> bool:
    """Whether a config the code names ('production', 'config.ProductionConfig') is the production one."""
    return "prod" in config.lower()


def left_to_development_default(context: Context) -> ConfigChoice | None:
    """The variable that picks the config the app loads, unset where check runs, so that the code's default loaded,
    one that is not the production config (Flasky's "default", a DevelopmentConfig): what debug on comes from."""
    for choice in context.once(config_choices):
        if choice.variable in context.environ or choice.variable.startswith("FLASKPROD_"):
            continue
        if choice.default is not None and not for_production(choice.default):
            return choice
    return None


def dynaconf_switches(context: Context) -> Iterator[tuple[str, str]]:
    """(variable, file:line) of each FlaskDynaconf(app, ...) in the project's code that keeps settings environments
    ([development], [production]), with the variable that picks one: its ENV_SWITCHER, else its ENVVAR_PREFIX's _ENV
    (FLASK_ENV, dynaconf's default for Flask). Unset, dynaconf loads [development]."""
    for item, tree in context.python_files():
        if "FlaskDynaconf" not in item.text or for_development(item.rel):
            continue
        for node in walk(tree):
            if not (isinstance(node, ast.Call) and call_name(node) == "FlaskDynaconf"):
                continue
            given = {
                kw.arg.upper(): kw.value.value
                for kw in node.keywords
                if kw.arg is not None and isinstance(kw.value, ast.Constant)
            }
            if given.get("ENVIRONMENTS", True) is False:
                continue  # one environment: nothing to pick
            switch, prefix = given.get("ENV_SWITCHER"), given.get("ENVVAR_PREFIX", "FLASK")
            if isinstance(switch, str):
                yield switch, item.at(node.lineno)
            elif isinstance(prefix, str):
                yield f"{prefix}_ENV", item.at(node.lineno)


def code_defaults(context: Context) -> Iterator[tuple[str, str | None]]:
    """(variable, the default the code names for it, None when it names none) of each environment read in the
    project's modules, development files left out."""
    for item, tree in context.python_files():
        if not for_development(item.rel) and ("environ" in item.text or "getenv" in item.text):
            for variable, default, _ in environ_reads(tree):
                yield variable, default


@dataclass(frozen=True)
class ConfigChoice:
    variable: str
    default: str | None  # what the code uses when the variable is unset, when the code names it
    required: bool  # os.environ["NAME"]: the app fails without it
    read_at: str  # file:line of the read
    loaded_at: str  # file:line of the from_object call


def config_choices(context: Context) -> Iterator[ConfigChoice]:
    """Each environment variable the argument of an app.config.from_object() call is made from: read in it, in what
    its scope assigns to a name it uses, or, for a parameter of its function, in a call of that function elsewhere
    in the project (Flasky's create_app(os.getenv("FLASK_CONFIG") or "default")). Development files are left out."""
    modules = [(item, tree) for item, tree in context.python_files() if not for_development(item.rel)]
    for item, tree in modules:
        if "from_object" not in item.text:
            continue  # a walk of every scope of a large project's every module, for nothing
        for scope in (tree, *(n for n in walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))):
            own = list(_own_nodes(scope))
            for call in own:
                if not (isinstance(call, ast.Call) and call_name(call) == "from_object" and call.args):
                    continue
                sources = [(item, call.args[0])]
                used = {n.id for n in ast.walk(call.args[0]) if isinstance(n, ast.Name)}
                sources += [(item, value) for name, value in _assigned(own) if name in used]
                if not isinstance(scope, ast.Module):
                    sources += _passed_in(modules, scope, used)
                for where, source in sources:
                    for variable, default, node in environ_reads(source):
                        required = isinstance(node, ast.Subscript)
                        yield ConfigChoice(variable, default, required, where.at(node.lineno), item.at(call.lineno))


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a module's or function's body, not those of the functions defined in it."""
    pending = list(ast.iter_child_nodes(scope))
    while pending:
        node = pending.pop()
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield node
            pending.extend(ast.iter_child_nodes(node))


def _assigned(nodes: list[ast.AST]) -> Iterator[tuple[str, ast.expr]]:
    for node in nodes:
        if isinstance(node, ast.Assign):
            yield from ((t.id, node.value) for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and isinstance(node.target, ast.Name) and node.value:
            yield node.target.id, node.value


def _passed_in(
    modules: list[tuple[ProjectFile, ast.Module]], function: ast.FunctionDef | ast.AsyncFunctionDef, used: set[str]
) -> Iterator[tuple[ProjectFile, ast.expr]]:
    """The arguments the project's calls of function give the parameters named in used."""
    params = [a.arg for a in (*function.args.posonlyargs, *function.args.args)]
    for item, tree in modules:
        if function.name not in item.text:
            continue
        for call in walk(tree):
            if not (isinstance(call, ast.Call) and call_name(call) == function.name):
                continue
            given = dict(zip(params, call.args, strict=False))
            given.update({kw.arg: kw.value for kw in call.keywords if kw.arg is not None})
            yield from ((item, value) for name, value in given.items() if name in used)


def environ_reads(expression: ast.AST) -> Iterator[tuple[str, str | None, ast.expr]]:
    """(variable, the default the code names for it, the read) of each environment read in expression:
    os.environ.get("X", "d"), os.getenv("X") or "d"; None for os.environ["X"] and a .get() naming none."""
    or_defaults: dict[int, str] = {}
    for node in walk(expression):
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            later = [v.value for v in node.values[1:] if isinstance(v, ast.Constant) and isinstance(v.value, str)]
            if later:
                or_defaults[id(node.values[0])] = later[0]
    for node in walk(expression):
        variable = variable_read(node) if reads_environ(node) else None
        if variable is None or not isinstance(node, ast.expr):
            continue
        default = or_defaults.get(id(node))
        if isinstance(node, ast.Call):
            given = node.args[1] if len(node.args) > 1 else next(
                (kw.value for kw in node.keywords if kw.arg == "default"), None
            )
            if isinstance(given, ast.Constant) and isinstance(given.value, str):
                default = given.value
        yield variable, default, node


def reads_environ(node: ast.AST) -> bool:
    """os.environ.get(...), environ.get(...), os.getenv(...), getenv(...), os.environ[...]: not any .get()."""
    target = node.func if isinstance(node, ast.Call) else node.value if isinstance(node, ast.Subscript) else None
    if isinstance(node, ast.Call) and isinstance(target, ast.Attribute) and target.attr == "get":
        target = target.value
    if isinstance(target, ast.Attribute):
        return target.attr in ("environ", "getenv")
    return isinstance(target, ast.Name) and target.id in ("environ", "getenv")
