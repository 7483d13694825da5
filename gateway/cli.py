"""`kefu`: the one command line for every operator and admin task."""

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from common.settings import CommonSettings
from knowledge.settings import KnowledgeSettings

if TYPE_CHECKING:
    from knowledge.flows import LiveIndex

EXIT_USAGE = 2
EXIT_REJECTED = 3


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one subcommand."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kefu", description="Kefu 客服 — operator command line")
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway (HTTP API and pages)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(handler=_serve)

    db = sub.add_parser("db", help="database schema").add_subparsers(metavar="ACTION")
    db.add_parser("upgrade", help="apply all migrations").set_defaults(handler=_db_upgrade)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(metavar="ACTION")
    demo.add_parser("load", help="load the 星河移动 demo knowledge base (idempotent)").set_defaults(
        handler=_demo_load
    )

    kb = sub.add_parser("kb", help="knowledge base").add_subparsers(metavar="ACTION")
    imp = kb.add_parser("import", help="upsert entries from a JSONL file; a bad file changes nothing")
    imp.add_argument("file", type=Path)
    imp.add_argument("--actor", default="cli")
    imp.set_defaults(handler=_kb_import)

    exp = kb.add_parser("export", help="write every entry as JSONL")
    exp.add_argument("-o", "--output", type=Path, default=None, help="file (default: standard output)")
    exp.set_defaults(handler=_kb_export)

    search = kb.add_parser("search", help="search as a customer or an agent")
    search.add_argument("query")
    search.add_argument("--as", dest="audience", choices=["customer", "agent"], default="customer")
    search.set_defaults(handler=_kb_search)

    kb.add_parser("reindex", help="rebuild the index from the database").set_defaults(handler=_kb_reindex)

    ev = kb.add_parser("eval", help="retrieval metrics of a query file on a throwaway database")
    ev.add_argument("queries", type=Path)
    ev.add_argument("--kb", type=Path, default=None, help="knowledge base JSONL (default: the demo KB)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--details", action="store_true", help="include every miss in the output")
    ev.set_defaults(handler=_kb_eval)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    settings = GatewaySettings()
    uvicorn.run(
        create_app(gateway_settings=settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level="info",
    )
    return 0


def _db_upgrade(_args: argparse.Namespace) -> int:
    from gateway import migrate

    url = CommonSettings().resolved_database_url
    migrate.upgrade(url)
    print(f"database at the newest schema ({_redact(url)})")
    return 0


def _demo_load(_args: argparse.Namespace) -> int:
    return _import(KnowledgeSettings().demo_kb_path, actor="demo")


def _kb_import(args: argparse.Namespace) -> int:
    return _import(args.file, actor=args.actor)


def _import(path: Path, *, actor: str) -> int:
    from common.db import make_engine, make_session_factory
    from knowledge.flows import ImportRejected, import_jsonl

    if not path.is_file():
        print(f"kefu: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
    engine = make_engine(CommonSettings().resolved_database_url)
    try:
        report = import_jsonl(session_factory=make_session_factory(engine), path=path, actor=actor)
    except ImportRejected as exc:
        print(f"kefu: {path}: import rejected, the database is unchanged", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return EXIT_REJECTED
    finally:
        engine.dispose()
    print(json.dumps({"file": str(path), **report.as_dict()}, ensure_ascii=False))
    return 0


def _kb_export(args: argparse.Namespace) -> int:
    from common.db import make_engine, make_session_factory
    from knowledge.flows import export_jsonl

    engine = make_engine(CommonSettings().resolved_database_url)
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    try:
        for line in export_jsonl(session_factory=make_session_factory(engine)):
            out.write(line + "\n")
    finally:
        if args.output:
            out.close()
        engine.dispose()
    return 0


def _open_index() -> "LiveIndex":
    from common.db import make_engine, make_session_factory
    from gateway.app import open_live_index

    common = CommonSettings()
    factory = make_session_factory(make_engine(common.resolved_database_url))
    return open_live_index(common=common, kb_settings=KnowledgeSettings(), session_factory=factory)


def _kb_search(args: argparse.Namespace) -> int:
    from knowledge import service

    live = _open_index()
    try:
        outcome = service.search(index=live.index, query=args.query, audience=args.audience)
    except ValueError as exc:
        print(f"kefu: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        json.dumps(
            {
                "tier": outcome.tier,
                "normalised_query": outcome.normalised_query,
                "hits": [
                    {"id": h.external_id, "confidence": round(h.confidence, 4), "legs": h.legs}
                    for h in outcome.hits
                ],
            },
            ensure_ascii=False,
        )
    )
    return 0


def _kb_reindex(_args: argparse.Namespace) -> int:
    import shutil

    common = CommonSettings()
    directory = KnowledgeSettings().index_dir or common.var_dir / "index"
    shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    live = _open_index()
    print(json.dumps({"entries": len(live.index), "seconds": round(time.perf_counter() - started, 2)}))
    return 0


def _kb_eval(args: argparse.Namespace) -> int:
    from gateway.evaluation import EvalInputError, evaluate_queries

    kb_path = args.kb or KnowledgeSettings().demo_kb_path
    try:
        result = evaluate_queries(queries_path=args.queries, kb_path=kb_path, details=args.details)
    except EvalInputError as exc:
        print(f"kefu: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for key, value in result.items():
            if key != "misses":
                print(f"{key:>18}: {value}")
        for miss in result.get("misses", []):
            print(f"  miss: {json.dumps(miss, ensure_ascii=False)}")
    return 0


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    raise SystemExit(main())
