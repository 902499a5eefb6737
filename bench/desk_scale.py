"""The desk with a year of cases (`python -m bench --desk-scale`, a step of `make bench`).

1. A throwaway PostgreSQL on 127.0.0.1 (tests/pg_server.py), migrated, seeded with COPY:
   ``cases`` historical escalations over ``days`` days (a few open and claimed ones in the
   last two days, the rest resolved, some rated), their messages and the bot's outcomes;
   a year of incidents (``incidents``, each with ``merchants_per_incident`` linked
   merchants, two of them still active) and ``reports`` of the bot's error-1000 reports.
2. The desk started as production starts it (the Procfile's ``desk`` line), Rasa away.
3. A bounded number of requests, one at a time, to each of: the console's queue (first
   pages of several filters and a walk down the older links), a random case page, the
   stats page, the list API (first pages and a walk down ``next_cursor``) and the bot's
   report of a new merchant seeing 1000 (``POST /api/incidents/reports``, which counts the
   window's reporters per scope without those the active incidents hold); p50 / p95 /
   max per kind, the desk's RSS after the warm-up and at the end.
4. Prints the table and the targets, writes ``desk_scale.json``.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import re
import secrets
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import aiohttp
import sqlalchemy as sa

from bench import report
from bench.servers import Service, free_port, rss_kib
from scripts.launch import command
from support_desk.accounts import hash_password
from support_desk.db import migrate, sync_url
from tests.pg_server import PostgresServer

AGENT = "bench"
KINDS = ("queue", "case", "stats", "list_api", "report")
STATUS_WEIGHTS = {"resolved": 0.8, "claimed": 0.1, "open": 0.1}  # of the last two days' cases
CHANNELS = ("socketio", "rest", "wecom_kf", "wechat")
SUMMARIES = (
    "报1000，重启后仍然报错",
    "POS shows 1000 after the network check",
    "1000 通讯失败，换了网线也不行",
    "error 1000 since this morning, restarted twice",
)


def _row(*values: Any) -> str:
    """One line of COPY's text format (the seeded values hold no tab, newline or backslash)."""
    return "\t".join(r"\N" if value is None else str(value) for value in values) + "\n"


def _stamp(at: datetime) -> str:
    return at.isoformat()


def seed_rows(cases: int, days: int, now: datetime, rng: random.Random) -> Iterator[Dict[str, List[str]]]:
    """COPY lines for escalations, messages and outcomes, in chunks of 10 000 cases."""
    span = days * 86400.0
    chunk: Dict[str, List[str]] = {"escalations": [], "messages": [], "outcomes": []}
    message_id = outcome_id = 0
    for case_id in range(1, cases + 1):
        created = now - timedelta(seconds=span * (1 - case_id / cases) + rng.random() * 30)
        recent = now - created < timedelta(days=2)
        status = rng.choices(list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values()))[0] if recent else "resolved"
        priority = rng.choices(("urgent", "high", "normal"), (0.05, 0.2, 0.75))[0]
        replied = None if status == "open" else created + timedelta(minutes=rng.uniform(1, 180))
        resolved = replied + timedelta(minutes=rng.uniform(5, 600)) if status == "resolved" and replied else None
        rated = resolved is not None and rng.random() < 0.3
        agent = None if status == "open" else f"agent{rng.randrange(10)}"
        sender = f"bench-{case_id}"
        chunk["escalations"].append(
            _row(
                case_id,
                f"PX-{case_id:07d}",
                sender,
                rng.choice(CHANNELS),
                rng.choice(("zh", "en")),
                status,
                priority,
                f"8983100481{rng.randrange(20000):05d}",
                f"SN{rng.randrange(30000):06d}",
                "1000",
                f"138{rng.randrange(10**8):08d}",
                rng.choice(SUMMARIES),
                '[{"step": "network", "outcome": "not_fixed"}, {"step": "restart", "outcome": "not_fixed"}]',
                agent,
                _stamp(replied) if replied else None,
                "fixed on the phone" if resolved else None,
                "network" if resolved else None,
                _stamp(created + timedelta(hours=2)),
                _stamp(replied) if replied else None,
                _stamp(resolved) if resolved else None,
                agent if resolved else None,
                rng.randint(1, 5) if rated else None,
                _stamp(resolved) if rated and resolved else None,
                None,
                _stamp(created),
                _stamp(resolved or replied or created),
            )
        )
        lines = [
            ("user", "transcript", "pos机报1000", created - timedelta(minutes=3), 1.0),
            ("bot", "transcript", "出现1000，按这四步排查", created - timedelta(minutes=2), 2.0),
        ]
        if replied:
            lines.append(("agent", "reply", "您好，我来帮您看看", replied, None))
        if resolved:
            lines.append(("bot", "closing", "工单已解决，机器人继续为您服务", resolved, None))
        for role, kind, text, at, source_ts in lines:
            message_id += 1
            chunk["messages"].append(
                _row(
                    message_id,
                    case_id,
                    role,
                    text,
                    _stamp(at),
                    agent if role == "agent" else None,
                    kind,
                    None,
                    _stamp(at),
                    None,
                    source_ts,
                    None,
                    None,
                    None,
                    None,
                )
            )
        for _ in range(rng.choice((1, 2))):  # the bot's diagnostics runs of this conversation
            outcome_id += 1
            outcome = rng.choices(("resolved", "unresolved", "known_incident"), (0.6, 0.3, 0.1))[0]
            at = created - timedelta(minutes=rng.uniform(1, 60))
            bot_rated = outcome == "resolved" and rng.random() < 0.3
            chunk["outcomes"].append(
                _row(
                    outcome_id,
                    sender,
                    outcome,
                    rng.choice(("network", "restart", "server", "software")) if outcome == "resolved" else None,
                    "zh",
                    _stamp(at),
                    rng.randint(1, 5) if bot_rated else None,
                    _stamp(at) if bot_rated else None,
                )
            )
        if case_id % 10_000 == 0 or case_id == cases:
            yield chunk
            chunk = {"escalations": [], "messages": [], "outcomes": []}


def incident_rows(settings: Dict[str, Any], days: int, now: datetime, rng: random.Random) -> Dict[str, List[str]]:
    """COPY lines for a year of incidents (the last two active), their linked merchants and
    the bot's reports; the incidents cover other cities than the timed reports' 4403."""
    rows: Dict[str, List[str]] = {"incidents": [], "incident_merchants": [], "incident_reports": []}
    count, per = settings["incidents"], settings["merchants_per_incident"]
    span = days * 86400.0
    for incident_id in range(1, count + 1):
        active = incident_id > count - 2
        start = now - timedelta(minutes=30) if active else now - timedelta(seconds=span * (1 - incident_id / count))
        end = None if active else start + timedelta(hours=1)
        region = rng.choice(("4401", "3101", "1100", "3301"))
        scope = json.dumps({"regions": [region], "terminal_models": [], "channels": []})
        rows["incidents"].append(
            _row(
                incident_id,
                region,
                "网关故障",
                "gateway outage",
                _stamp(start),
                "active" if active else "resolved",
                _stamp(start),
                scope,
                _stamp(end) if end else None,
                _stamp(start),
                _stamp(end) if end else None,
            )
        )
        for n in range(per):
            merchant = (incident_id - 1) * per + n + 1
            told = _stamp(end) if end else None
            rows["incident_merchants"].append(
                _row(
                    merchant,
                    incident_id,
                    f"held-{merchant}",
                    rng.choice(CHANNELS),
                    "zh",
                    region,
                    False,
                    True,
                    _stamp(start + timedelta(minutes=5)),
                    "sent" if end else None,
                    told,
                )
            )
    for report_id in range(1, settings["reports"] + 1):
        at = now - timedelta(seconds=span * (1 - report_id / settings["reports"]) + 120)
        rows["incident_reports"].append(
            _row(
                report_id,
                f"held-{rng.randrange(1, count * per + 1)}",
                rng.choice(CHANNELS),
                "zh",
                "reported",
                rng.choice(("4401", "3101", "4403")),
                "pax_a920",
                _stamp(at),
            )
        )
    return rows


COLUMNS = {
    "escalations": "id, ticket, sender_id, channel, language, status, priority, merchant_id, terminal_serial,"
    " error_code, contact, summary, diagnostics, claimed_by, claimed_at, resolution_note,"
    " resolution_category, expected_reply_by, first_reply_at, resolved_at, resolved_by,"
    " satisfaction, satisfaction_at, platform_session, created_at, updated_at",
    "messages": "id, escalation_id, role, text, at, author, kind, buttons, delivered_at, delivery_error,"
    " source_ts, channel_state, channel_reason, channel_at, attachment_id",
    "outcomes": "id, sender_id, outcome, fixed_step, language, at, rating, rated_at",
    "incidents": "id, region, message_zh, message_en, starts_at, status, created_at, scope, ended_at, posted_at, all_told_at",
    "incident_merchants": "id, incident_id, sender_id, channel, language, region, wants_person, subscribed, linked_at,"
    " notice_state, told_at",
    "incident_reports": "id, sender_id, channel, language, kind, region, terminal_model, at",
}


def seed(url: str, cases: int, days: int, password: str, incidents: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Migrate and fill the database with COPY (``incidents``: the settings of
    ``incident_rows``, none without); returns the row counts and the time taken."""
    started = time.perf_counter()
    migrate(url)
    engine = sa.create_engine(sync_url(url))
    now = datetime.now(timezone.utc)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        chunks = list(seed_rows(cases, days, now, random.Random(17)))
        if incidents:
            chunks.append(incident_rows(incidents, days, now, random.Random(23)))
        for chunk in chunks:
            for table, lines in chunk.items():
                cursor.copy_expert(f"COPY {table} ({COLUMNS[table]}) FROM STDIN", io.StringIO("".join(lines)))
        for table in COLUMNS:
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        cursor.execute("INSERT INTO agents (username, password_hash, created_at) VALUES (%s, %s, now())", (AGENT, hash_password(password)))
        raw.commit()
        cursor.execute("SELECT " + ", ".join(f"(SELECT count(*) FROM {table})" for table in COLUMNS))
        counts = dict(zip(COLUMNS, cursor.fetchone()))
    finally:
        raw.close()
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return {**counts, "seed_s": round(time.perf_counter() - started, 1)}


def desk_process(run_dir: Path, url: str, token: str) -> "tuple[Service, str]":
    """The desk as the Procfile starts it, on a free loopback port, Rasa unreachable."""
    port = free_port()
    env = {
        "DESK_PORT": str(port),
        "DESK_HOST": "127.0.0.1",
        "DESK_API_TOKEN": token,
        "DESK_DATABASE_URL": url,
        "DESK_SECRET_KEY": secrets.token_urlsafe(32),
        "RASA_URL": "http://127.0.0.1:9",
        "RASA_AUTH_TOKEN": "",
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
    }
    service = Service("desk", command("desk"), run_dir, env=env).start()
    base = f"http://127.0.0.1:{port}"
    service.wait_http(base + "/health")
    return service, base


def percentile(values: List[float], share: float) -> Optional[float]:
    """The nearest-rank percentile (None without values)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, min(len(ordered) - 1, int(round(share * len(ordered))) - 1))], 1)


class Walker:
    """The URLs of one kind of request, turn about: the first page of one of a few filters,
    then the next page of a walk down the list (from the last filter's first page)."""

    def __init__(self, firsts: List[str], next_of: Callable[[str, str], Optional[str]]) -> None:
        self.firsts = firsts
        self.next_of = next_of  # (url, body) -> the next page's URL, or None on the last page
        self.turn = 0
        self.following: Optional[str] = None

    def url(self) -> str:
        """The next URL to request."""
        self.turn += 1
        if self.turn % 2 == 0:
            return self.following or self.firsts[-1]
        return self.firsts[(self.turn // 2) % len(self.firsts)]

    def saw(self, url: str, body: str) -> None:
        """The answer to the URL just requested: a step of the walk gives the next one."""
        if self.turn % 2 == 0:
            self.following = self.next_of(url, body)


def older_link(_: str, body: str) -> Optional[str]:
    found = re.search(r'id="page-older" rel="next" href="([^"]+)"', body)
    return found.group(1).replace("&amp;", "&") if found else None


def next_api_page(url: str, body: str) -> Optional[str]:
    cursor = json.loads(body).get("next_cursor")
    return f"{url.split('&cursor=')[0]}&cursor={cursor}" if cursor else None


async def login(session: aiohttp.ClientSession, base: str, password: str) -> None:
    async with session.get(f"{base}/console/login") as response:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await response.text())
    assert csrf, "no login form"
    form = {"username": AGENT, "password": password, "csrf": csrf.group(1)}
    async with session.post(f"{base}/console/login", data=form, allow_redirects=False) as response:
        if response.status != 302 or response.headers.get("Location") != "/console":
            raise RuntimeError(f"console login failed: {response.status}")


async def measure(base: str, token: str, password: str, cases: int, settings: Dict[str, Any], desk: Service) -> Dict[str, Any]:
    """``requests`` timed requests of each kind after ``warmup`` untimed ones; RSS around them."""
    rng = random.Random(1000)
    walkers = {
        "queue": Walker(
            [
                "/console",
                "/console?status=open",
                "/console?priority=urgent",
                "/console?q=898310048100123",
                "/console?status=resolved&priority=high",
                "/console?status=resolved",
            ],
            older_link,
        ),
        "list_api": Walker(
            ["/api/escalations?limit=50", "/api/escalations?status=open&limit=50", "/api/escalations?status=resolved&limit=50"],
            next_api_page,
        ),
    }
    urls: Dict[str, Callable[[], str]] = {
        "queue": walkers["queue"].url,
        "list_api": walkers["list_api"].url,
        "case": lambda: f"/console/cases/{rng.randint(1, cases)}",
        "stats": lambda: "/console/stats",
        "report": lambda: "/api/incidents/reports",
    }
    reporters = iter(range(1, 10**9))
    timings: Dict[str, List[float]] = {kind: [] for kind in KINDS}
    errors: List[str] = []
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=60)) as session:
        await login(session, base, password)
        headers = {"Authorization": f"Bearer {token}"}
        rss_before = 0.0
        for timed in (False, True):
            for kind in KINDS:
                for _ in range(settings["requests"] if timed else settings["warmup"]):
                    url = urls[kind]()
                    started = time.perf_counter()
                    if kind == "report":  # a merchant the incidents do not cover sees 1000
                        report = {
                            "kind": "reported",
                            "sender_id": f"bench-report-{next(reporters)}",
                            "channel": "rest",
                            "language": "zh",
                            "region": "4403",
                            "terminal_model": "pax_a920",
                        }
                        request = session.post(base + url, json=report, headers=headers)
                    else:
                        request = session.get(base + url, headers=headers if kind == "list_api" else None, allow_redirects=False)
                    async with request as response:
                        body = await response.text()
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status != (202 if kind == "report" else 200):
                        errors.append(f"{kind} {url}: {response.status}")
                    elif kind in walkers:
                        walkers[kind].saw(url, body)
                    if timed:
                        timings[kind].append(elapsed)
            if not timed:
                rss_before = rss_kib(desk.pid) / 1024
        rss_after = rss_kib(desk.pid) / 1024
    return {
        "kinds": [
            {
                "kind": kind,
                "requests": len(values),
                "p50_ms": percentile(values, 0.5),
                "p95_ms": percentile(values, 0.95),
                "max_ms": round(max(values), 1) if values else None,
            }
            for kind, values in timings.items()
        ],
        "errors": errors[:20],
        "error_count": len(errors),
        "rss_mib": {"after_warmup": round(rss_before, 1), "after_requests": round(rss_after, 1)},
    }


def targets(result: Dict[str, Any], settings: Dict[str, Any]) -> List[Dict[str, Any]]:
    """p95 of every kind within the target, no errors, the desk's RSS flat."""
    checks = [
        {
            "target": f"{row['kind']} p95 ≤ {settings['target_p95_ms']} ms",
            "value": row["p95_ms"],
            "met": row["p95_ms"] is not None and row["p95_ms"] <= settings["target_p95_ms"],
        }
        for row in result["kinds"]
    ]
    growth = round(result["rss_mib"]["after_requests"] - result["rss_mib"]["after_warmup"], 1)
    checks.append(
        {"target": f"desk RSS growth ≤ {settings['rss_growth_mib']} MiB", "value": growth, "met": growth <= settings["rss_growth_mib"]}
    )
    checks.append({"target": "no errors", "value": result["error_count"], "met": result["error_count"] == 0})
    return checks


def desk_scale_part(run_dir: Path, settings: Dict[str, Any]) -> Dict[str, Any]:
    """Seed PostgreSQL, start the desk, measure; everything started here is stopped here."""
    part = settings["desk_scale"]
    password, token = secrets.token_urlsafe(12), secrets.token_urlsafe(16)
    postgres = PostgresServer().start()
    desk: Optional[Service] = None
    try:
        url = postgres.create_database("desk_scale")
        print(f"  seeding {part['cases']} cases and a year of incidents over {part['days']} days (COPY) …", flush=True)
        seeded = seed(url, part["cases"], part["days"], password, part["incident_history"])
        print(f"  seeded {seeded} ", flush=True)
        desk, base = desk_process(run_dir, url, token)
        figures = asyncio.run(measure(base, token, password, part["cases"], part, desk))
    finally:
        if desk is not None:
            desk.stop()
        postgres.stop()
    result = {"cases": part["cases"], "days": part["days"], "seeded": seeded, **figures}
    result["targets"] = targets(result, part)
    return result


def print_part(result: Dict[str, Any]) -> None:
    """The table and the targets."""
    print()
    print(report.table(result["kinds"], ["kind", "requests", "p50_ms", "p95_ms", "max_ms"]))
    print(
        f"desk RSS: {result['rss_mib']['after_warmup']} MiB after the warm-up, "
        f"{result['rss_mib']['after_requests']} MiB at the end; errors: {result['error_count']}"
    )
    for check in result["targets"]:
        print(f"[{'met' if check['met'] else 'MISSED'}] {check['target']}: {check['value']}")
    for line in result["errors"]:
        print(f"  error: {line}")
