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

# The demo customer's phone number (a test number, reserved for examples).
DEMO_PHONE = "13800138000"

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

    run = sub.add_parser("run", help="the whole product: Rasa, the action server and the gateway")
    run.add_argument("--host", default=None)
    run.add_argument("--port", type=int, default=None)
    run.set_defaults(handler=_run)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(metavar="ACTION")
    demo.add_parser(
        "load", help="load the 星河移动 demo KB and seed demo agents (idempotent; passwords printed once)"
    ).set_defaults(handler=_demo_load)

    notices = sub.add_parser("notices", help="proactive notices").add_subparsers(metavar="ACTION")
    scan = notices.add_parser(
        "scan", help="run the scheduled scans now (low balance, points, packages); idempotent within a day"
    )
    scan.add_argument("names", nargs="*", help="scans to run (default: all)")
    scan.set_defaults(handler=_notices_scan)

    bot = sub.add_parser("bot", help="the Rasa project").add_subparsers(metavar="ACTION")
    train = bot.add_parser("train", help="train the Rasa model unless bot/ is unchanged")
    train.add_argument("--force", action="store_true")
    train.set_defaults(handler=_bot_train)
    userdict = bot.add_parser("userdict", help="write the jieba user dictionary generated from the KB")
    userdict.set_defaults(handler=_bot_userdict)

    evals = sub.add_parser("eval", help="evaluate a running product").add_subparsers(metavar="WHAT")
    for name, helptext in (("dialogues", "scripted multi-turn dialogues"), ("queries", "single queries")):
        ev_live = evals.add_parser(name, help=helptext)
        ev_live.add_argument("file", type=Path)
        ev_live.add_argument("--url", default="http://127.0.0.1:8000")
        ev_live.add_argument(
            "--credentials",
            type=Path,
            default=None,
            help="demo agent credentials (default: <KEFU_VAR_DIR>/demo-credentials.json)",
        )
        ev_live.add_argument("--json", action="store_true")
        ev_live.set_defaults(handler=_eval_live, what=name)

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
    code = _import(KnowledgeSettings().demo_kb_path, actor="demo")
    if code == 0:
        _seed_demo_agents()
    return code


def _seed_demo_agents() -> None:
    import secrets
    from datetime import date, timedelta
    from decimal import Decimal

    from sqlalchemy import select

    from common.db import make_engine, make_session_factory, session_scope
    from gateway.agent import service as agents
    from gateway.agent.models import Role
    from gateway.conversation import service as conversations
    from gateway.notices.models import DemoAccount, DemoPackage
    from gateway.notices.settings import events_api_key
    from gateway.supervisor import announce_credentials

    common = CommonSettings()
    engine = make_engine(common.resolved_database_url)
    created: dict[str, object] = {}
    with session_scope(make_session_factory(engine)) as db_session:
        for key, username, name, role in (
            ("agent", "demo-agent", "小星", Role.AGENT),
            ("admin", "demo-admin", "管理员", Role.ADMIN),
        ):
            if agents.get_by_username(db_session=db_session, username=username) is None:
                password = secrets.token_urlsafe(12)
                agents.create(db_session=db_session, username=username, password=password, display_name=name, role=role)
                created[key] = {"username": username, "password": password}
        # The demo customer of the README's notice walkthrough, with an active day pass in the demo billing.
        contact = conversations.get_or_create_contact(db_session=db_session, channel="rest", source_id="demo-customer")
        contact.display_name = contact.display_name or "演示客户"
        contact.phone = contact.phone or DEMO_PHONE
        if not db_session.scalar(select(DemoPackage.id).where(DemoPackage.phone == DEMO_PHONE)):
            db_session.add(DemoPackage(phone=DEMO_PHONE, package="港澳日套餐"))
        # What the scheduled scans find for the demo customer: a low balance, points lapsing this month and
        # an add-on ending in two days (`kefu notices scan` shows them at once).
        if not db_session.scalar(select(DemoAccount.id).where(DemoAccount.phone == DEMO_PHONE)):
            today = date.today()
            month_end = (today.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            db_session.add(
                DemoAccount(phone=DEMO_PHONE, balance=Decimal("5.20"), points=1200, points_expire_on=month_end)
            )
            db_session.add(DemoPackage(phone=DEMO_PHONE, package="5G流量加油包", expires_on=today + timedelta(days=2)))
    engine.dispose()
    path = common.var_dir / "demo-credentials.json"
    if created:
        # Printed once, at first start; never a fixed default in code.
        announce_credentials(path, created)
    # The events API key (generated once under var/secrets) joins the file `kefu eval` reads.
    saved = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    key = events_api_key(common.var_dir).get_secret_value()
    if saved.get("events_api_key") != key:
        saved["events_api_key"] = key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(saved, ensure_ascii=False, indent=2))
        path.chmod(0o600)


def _notices_scan(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from common.db import make_engine, make_session_factory
    from gateway.delivery import Delivery
    from gateway.notices.dispatcher import Dispatcher
    from gateway.notices.scans import SCANS
    from gateway.notices.settings import NoticeSettings
    from gateway.settings import GatewaySettings

    unknown = [name for name in args.names if name not in SCANS]
    if unknown:
        print(f"unknown scan(s): {', '.join(unknown)}; known: {', '.join(SCANS)}", file=sys.stderr)
        return EXIT_USAGE
    engine = make_engine(CommonSettings().resolved_database_url)
    # The scan only stores notices; the running gateway's sender delivers them (quiet hours apply).
    dispatcher = Dispatcher(
        session_factory=make_session_factory(engine),
        settings=NoticeSettings(),
        delivery=Delivery(),
        rasa=None,
        rasa_ready=lambda: False,
        zone=GatewaySettings().zone,
    )
    for name in args.names or list(SCANS):
        result = dispatcher.run_scan(SCANS[name], claim=False)
        print(json.dumps(asdict(result), default=str, ensure_ascii=False))
    engine.dispose()
    return 0


def _run(args: argparse.Namespace) -> int:
    from gateway.settings import GatewaySettings
    from gateway.supervisor import run

    settings = GatewaySettings()
    return run(host=args.host or settings.host, port=args.port or settings.port)


def _bot_train(args: argparse.Namespace) -> int:
    from gateway.supervisor import train

    trained = train(force=args.force)
    print("trained a new Rasa model" if trained else "Rasa model is up to date with bot/")
    return 0


def _bot_userdict(_args: argparse.Namespace) -> int:
    from gateway.supervisor import BOT
    from knowledge.flows import parse_jsonl, write_jieba_userdict

    path = KnowledgeSettings().demo_kb_path
    with path.open("rb") as stream:
        records = parse_jsonl(stream)
    out = BOT / "jieba_userdict" / "kb.txt"
    count = write_jieba_userdict(out, records)
    print(f"{count} words written to {out}")
    return 0


def _eval_live(args: argparse.Namespace) -> int:
    from gateway.dialogue_eval import evaluate_dialogues, evaluate_queries_live
    from gateway.evaluation import EvalInputError

    credentials = args.credentials or CommonSettings().var_dir / "demo-credentials.json"
    runner = evaluate_dialogues if args.what == "dialogues" else evaluate_queries_live
    try:
        result = runner(path=args.file, url=args.url, credentials=credentials)
    except EvalInputError as exc:
        print(f"kefu: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
    return 0


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
                    {"id": h.external_id, "confidence": round(h.confidence, 4), "legs": h.legs} for h in outcome.hits
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
