"""The console's queue and case history with aiohttp's test client: search by each key,
filters that refuse bad values beside their field, the repeat flag, times as <time>."""

from __future__ import annotations

import html
import re

import pytest

from support_desk.history import ordinal
from tests.harness.desk_app import AUTH, console_client
from tests.harness.desk_app import csrf_of, login


@pytest.fixture
async def client(tmp_path, rasa):
    async with console_client(tmp_path / "desk.db", rasa.url) as test_client:
        await login(test_client)
        yield test_client


async def case(client, ticket, **fields):
    body = {"sender_id": f"chat-{ticket}", "ticket": ticket, "language": "zh", **fields}
    response = await client.post("/api/escalations", json=body, headers=AUTH)
    assert response.status == 201
    return await response.json()


def queue_tickets(page: str) -> list:
    table = page.split('id="queue"', 1)[1]
    return re.findall(r'href="/console/cases/\d+">(PX-[A-Z0-9]+)<', table)


async def get(client, query: str):
    response = await client.get(f"/console?{query}")
    return response.status, await response.text()


async def test_search_finds_by_ticket_merchant_serial_and_phone(client):
    await case(client, "PX-AAA222", merchant_id="898310048160123", terminal_serial="SN7Q2K9", contact="138 1234 5678")
    await case(client, "PX-BBB333", merchant_id="898310048169999", terminal_serial="N86X0042", contact="13900001111")
    for term, expected in [
        ("PX-AAA222", ["PX-AAA222"]),
        ("bbb333", ["PX-BBB333"]),
        ("898310048169999", ["PX-BBB333"]),
        ("sn7q2k9", ["PX-AAA222"]),
        ("13812345678", ["PX-AAA222"]),
        ("139-0000-1111", ["PX-BBB333"]),
    ]:
        status, page = await get(client, f"q={term}")
        assert status == 200 and queue_tickets(page) == expected, term
        assert f'value="{term}"' in page  # the box keeps what was searched
    status, page = await get(client, "q=13900001111")
    assert "139****1111" in page and "13900001111" not in page.replace('value="13900001111"', "")


async def test_search_and_filters_combine(client):
    await case(client, "PX-AAA222", merchant_id="898310048160123", priority="urgent")
    await case(client, "PX-BBB333", merchant_id="898310048160123")
    _, page = await get(client, "q=898310048160123&priority=urgent")
    assert queue_tickets(page) == ["PX-AAA222"]
    _, page = await get(client, "q=898310048160123&status=resolved")
    assert queue_tickets(page) == [] and "没有符合条件的工单" in page


@pytest.mark.parametrize(
    "query, field, message",
    [
        ("older_than=abc", "older_than", "请填 0 到 525600 之间的整数（分钟）。"),
        ("older_than=-5", "older_than", "请填 0 到 525600 之间的整数（分钟）。"),
        ("older_than=99999999999999", "older_than", "请填 0 到 525600 之间的整数（分钟）。"),
        ("status=deleted", "status", "状态只能是“待处理”“处理中”或“已结案”。"),
        ("priority=%3Cb%3Ehigh%3C/b%3E", "priority", "优先级只能是“紧急”“高”或“普通”。"),
        ("q=" + "x" * 65, "q", "搜索内容最多 64 个字符。"),
    ],
)
async def test_bad_filter_values_get_a_message_beside_the_field(client, query, field, message):
    await case(client, "PX-AAA222")
    status, page = await get(client, query)
    assert status == 400
    assert f'<span class="field-error" id="e-{field}">{message}</span>' in page
    assert re.search(f'id="f-{field}"[^>]* aria-invalid="true" aria-describedby="e-{field}"', page)
    assert 'id="queue"' not in page and "请先改正上面标出的筛选条件" in page  # no list it did not filter
    kept = html.escape(query.split("=", 1)[1].replace("%3C", "<").replace("%3E", ">"))
    if field in ("q", "older_than"):  # the value is kept where it was typed
        assert f'name="{field}" id="f-{field}" ' in page and f'value="{kept}"' in page
    else:
        assert f'<option value="{kept}" selected>{kept}</option>' in page
    assert "<b>high</b>" not in page


async def test_a_kept_bad_value_is_selected_in_its_list(client):
    _, page = await get(client, "status=deleted")
    assert '<option value="deleted" selected>deleted</option>' in page


async def test_bad_filter_message_in_english(client):
    await client.get("/console/lang/en")
    status, page = await get(client, "older_than=abc&status=open")
    assert status == 400 and "Enter a whole number of minutes from 0 to 525600." in page
    assert '<option value="open" selected>' in page  # the good values stay chosen too


async def test_age_filter_takes_minutes_also_in_full_width_digits(client):
    await case(client, "PX-AAA222")
    status, page = await get(client, "older_than=０")
    assert status == 200 and queue_tickets(page) == ["PX-AAA222"]
    _, page = await get(client, "older_than=60")
    assert queue_tickets(page) == []


async def test_repeat_marker_history_and_bot_runs(client):
    await client.post("/api/outcomes", headers=AUTH, json={"sender_id": "chat-PX-CCC444", "outcome": "resolved", "fixed_step": "network"})
    first = await case(client, "PX-AAA222", terminal_serial="SN7Q2K9", merchant_id="898310048160123")
    await client.post(f"/api/escalations/{first['id']}/resolve", headers=AUTH, json={"note": "换了网线", "category": "hardware"})
    await case(client, "PX-BBB333", terminal_serial="SN7Q2K9")
    third = await case(client, "PX-CCC444", terminal_serial="SN7Q2K9")
    await case(client, "PX-DDD555", terminal_serial="OTHER-SN")

    _, page = await get(client, "")
    rows = {ticket: row for row in page.split("<tr>") for ticket in re.findall(r">(PX-[A-Z0-9]+)</a>", row)}
    assert "7 天内第 3 次" in rows["PX-CCC444"]
    assert "badge repeat" not in rows["PX-BBB333"] and "badge repeat" not in rows["PX-DDD555"]

    page = await (await client.get(f"/console/cases/{third['id']}")).text()
    history = page.split('id="history"', 1)[1].split("</section>", 1)[0]
    assert "本终端 7 天内第 3 次报障：建议检查硬件或更换" in history
    earlier = history.split('id="earlier-cases"', 1)[1].split("</ul>", 1)[0]
    assert re.findall(r">(PX-[A-Z0-9]+)</a>", earlier) == ["PX-BBB333", "PX-AAA222"]
    assert "已结案 · 硬件" in earlier
    assert "排查后已解决 · 检查网络" in history.split('id="bot-runs"', 1)[1]

    await client.get("/console/lang/en")
    page = await (await client.get(f"/console/cases/{third['id']}")).text()
    assert "3rd case for this SN in 7 days: consider a hardware check or replacement" in page
    page = await (await client.get(f"/console/cases/{first['id']}")).text()
    assert 'id="repeat-flag"' not in page and "No earlier cases." in page
    assert "No finished diagnostics in this conversation." in page


async def test_times_are_time_elements_with_a_utc_fallback(client):
    created = await case(client, "PX-AAA222", transcript=[{"role": "user", "text": "报1000"}])
    _, page = await get(client, "")
    assert re.search(r'<time datetime="[0-9T:.+-]+" data-local="datetime">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>', page)
    assert '<script src="/console/static/time.js"></script>' in page
    page = await (await client.get(f"/console/cases/{created['id']}")).text()
    assert re.search(r'data-local="time">\d\d-\d\d \d\d:\d\d UTC</time>', page)
    script = await client.get("/console/static/time.js")
    assert script.status == 200 and "window.deskTime" in await script.text()


async def test_incident_end_typed_in_the_agents_zone_is_stored_in_utc(client):
    token = csrf_of(await (await client.get("/console/incidents")).text())
    await client.post(
        "/console/incidents",
        data={
            "csrf": token,
            "message_zh": "网关维护",
            "message_en": "Gateway maintenance",
            "expected_end": "2099-01-01T12:00",
            "timezone": "Asia/Shanghai",
        },
    )
    listed = (await (await client.get("/api/incidents", headers=AUTH)).json())["incidents"]
    assert listed[0]["expected_end"] == "2099-01-01T04:00:00+00:00"
    bad = await client.post(
        "/console/incidents",
        headers={"Referer": "/console/incidents"},
        data={"csrf": token, "message_zh": "x", "message_en": "y", "expected_end": "2099-01-01T12:00", "timezone": "../../etc/passwd"},
    )
    assert bad.status == 200 and "unknown time zone" in await bad.text()
    assert len((await (await client.get("/api/incidents", headers=AUTH)).json())["incidents"]) == 1


def test_english_ordinals():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 103, 111)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "103rd",
        "111th",
    ]


def page_link(page: str, name: str):
    found = re.search(f'id="page-{name}" rel="[a-z]+" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


async def test_queue_pages_keep_the_filters_and_skip_nothing_when_cases_arrive(client):
    for number in range(55):
        await case(client, f"PX-Q{number:04d}", priority="high" if number < 53 else "normal")
    status, first = await get(client, "status=open&priority=high")
    assert status == 200 and page_link(first, "newer") is None
    shown = queue_tickets(first)
    assert shown == [f"PX-Q{n:04d}" for n in range(52, 2, -1)]  # 50 newest first
    older = page_link(first, "older")
    assert "status=open" in older and "priority=high" in older and "cursor=" in older
    await case(client, "PX-QNEW1", priority="high")  # arrives while the agent pages on
    response = await client.get(older)
    second = await response.text()
    assert response.status == 200 and queue_tickets(second) == ["PX-Q0002", "PX-Q0001", "PX-Q0000"]
    assert page_link(second, "older") is None
    back = await (await client.get(page_link(second, "newer"))).text()
    assert queue_tickets(back) == shown  # the page before, not shifted by the new case
    assert queue_tickets(await (await client.get("/console?status=open&priority=high")).text())[0] == "PX-QNEW1"


async def test_a_bad_page_link_is_refused_with_a_way_back(client):
    await case(client, "PX-AAA222")
    status, page = await get(client, "status=open&cursor=not-a-cursor")
    assert status == 400 and 'id="queue"' not in page
    assert "这个翻页链接无效" in page and '<a href="/console">回到最新一页</a>' in page
    assert '<option value="open" selected>' in page
