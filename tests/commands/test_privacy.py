"""Privacy: `/headsup export`, `/headsup forget-me` and the retention purge, through the console.

The member here has a distinctive name, so a search of everything stored (or of the raw database
file) for it, for their note and for their support words can only miss if they are truly gone.
The clock starts at Monday 2026-01-05 09:00 UTC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import SQLModel, col, func, select

import storage.tables  # noqa: F401  (every table in the metadata)
from bot.core import Actor, Role
from bot.ui import Button, Message, ToMember
from commands import privacy
from storage.checkin import CheckinWeek
from storage.crypto import Cipher
from storage.db import Database
from storage.events import EventRsvp
from storage.models import Identity, Member, OutboxMessage, OutboxStatus
from storage.platform_events import PlatformEvent
from storage.rotation import rotate_keys
from storage.support import CaseEvent, CaseMessage, CaseStatus, CoachProfile, SupportCase
from tests.conftest import TestDatabase
from tests.harness import ConsoleBot

MEMBER = "zanthe-quillfeather"
OTHER = "orlando-brackenbury"
NOTE = "marmalade-and-governors note"
WORDS = "ofsted-kestrel worries keep me awake"
FROM_COACH = "periwinkle reply from the coach"
FROM_MEMBER = "tangerine answer from the member"
LINK = "https://meet.example/heads-together"
_HEADER = re.compile(r"^\[(?:edited )?(?:DM|ephemeral) ([^\]]+)\]$|^\[(?:edited )?#[^\]]+\]$", re.M)


# --- helpers ----------


def seen_by(out: str, name: str) -> str:
    """Every block of `out` that went to `name` (their DMs and ephemerals, edits included)."""
    heads = list(_HEADER.finditer(out))
    return "".join(
        out[head.start() : heads[i + 1].start() if i + 1 < len(heads) else len(out)]
        for i, head in enumerate(heads)
        if head.group(1) == name
    )


def exported(out: str) -> dict:
    """The JSON file attached to the export reply in `out`."""
    _, _, rest = out.partition("[file headsup-export-2026-01-05.json]\n")
    assert rest, out
    return json.loads(rest[: rest.index("\n}\n") + 2])


async def note_in(bot: ConsoleBot, name: str = MEMBER, note: str = NOTE) -> None:
    """`name` opts in, answers Good and adds a note."""
    await bot.say("/checkin", ":click yes", ":click good", ":click add a note", note, as_=name)


async def connected(bot: ConsoleBot, name: str = MEMBER, words: str = WORDS) -> None:
    """The coach goes on duty, `name` asks and connects, the coach accepts."""
    await bot.say("/coach on", as_="coach")
    await bot.say(f"/support {words}", ":click connect", as_=name)
    await bot.say(":click accept", as_="coach")


async def forget(bot: ConsoleBot, name: str = MEMBER) -> str:
    return await bot.say("/headsup forget-me", ":click delete everything", as_=name)


async def count(bot: ConsoleBot, table, *where) -> int:
    async with bot.app.database.session() as session:
        query = select(func.count()).select_from(table)
        return (await session.exec(query.where(*where) if where else query)).one()


async def everything_stored(bot: ConsoleBot) -> str:
    """Every column of every row of every table, as text, with encrypted values decrypted."""
    cipher = bot.app.cipher
    rows: list[str] = []
    async with bot.app.database.session() as session:
        conn = await session.connection()
        for table in SQLModel.metadata.sorted_tables:
            for row in (await conn.execute(table.select())).all():
                for value in row:
                    rows.append(repr(value))
                    if isinstance(value, str) and value.startswith("gAAAA"):
                        rows.append(cipher.decrypt(value))
    return "\n".join(rows)


def sqlite_files(db: TestDatabase) -> Callable[[], bytes]:
    """Reads the raw bytes of the SQLite database file and its write-ahead log, if any."""
    path = Path(db.url.removeprefix("sqlite:///"))

    def read() -> bytes:
        wal = path.with_name(path.name + "-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    return read


def actor(name: str) -> Actor:
    """A console user with the roles the harness gives them."""
    roles = {"coach": {Role.COACH}, "coach2": {Role.COACH}, "coordinator": {Role.COORDINATOR}}
    return Actor("console", name, name, frozenset(roles.get(name, set())))


async def case(bot: ConsoleBot, case_id: int = 1) -> SupportCase:
    async with bot.app.database.session() as session:
        found = await session.get(SupportCase, case_id)
        assert found is not None
        return found


# --- export ----------


async def test_export_is_a_private_json_file(bot: ConsoleBot):
    """`/headsup export` answers privately with a JSON file, a generated_at and an explanation."""
    out = await bot.say("/headsup export", as_=MEMBER)
    assert out.startswith(f"[ephemeral {MEMBER}]\nHere's everything HeadsUp stores about you")
    data = exported(out)
    assert data["generated_at"] == "2026-01-05T09:00:00+00:00"
    assert "keep this file safe" in data["about"]


async def test_export_holds_identity_and_checkins_with_the_note_decrypted(bot: ConsoleBot):
    """The export has the platform identity, the schedule, and each week with its note."""
    await note_in(bot)
    data = exported(await bot.say("/headsup export", as_=MEMBER))
    assert (
        data["identities"][0] | {"platform": "console", "user_id": MEMBER} == data["identities"][0]
    )
    assert data["identities"][0]["display_name"] == MEMBER
    assert data["checkins"]["subscription"]["day"] == "Monday"
    [week] = data["checkins"]["weeks"]
    assert (week["answer"], week["note"]) == ("Good", NOTE)


async def test_export_holds_own_support_words_and_shows_the_coach_only_as_coach(make_bot):
    """The member's case is there with their words and kept messages; the coach is "Coach"."""
    bot = await make_bot(support={"keep_transcripts": True})
    await connected(bot)
    await bot.say(FROM_COACH, as_="coach")
    await bot.say(FROM_MEMBER, as_=MEMBER)
    out = await bot.say("/headsup export", as_=MEMBER)
    [found] = exported(out)["support"]["cases"]
    assert (found["case"], found["your_words"], found["coach"]) == ("H-1001", WORDS, "Coach")
    assert [(m["from"], m["text"]) for m in found["kept_messages"]] == [
        ("Coach", FROM_COACH),
        ("you", FROM_MEMBER),
    ]
    file = out.split("[file ", 1)[1]
    assert '"coach"' not in file.replace('"coach": "Coach"', "")  # no coach name or id


async def test_export_never_includes_other_peoples_data(bot: ConsoleBot):
    """Another member's note, words and name are nowhere in the export."""
    await note_in(bot, OTHER, "another person's note")
    await connected(bot, OTHER, "another person's worries")
    await note_in(bot)
    out = await bot.say("/headsup export", as_=MEMBER)
    for theirs in (OTHER, "another person's", "H-1001"):
        assert theirs not in out


async def test_coach_export_has_case_numbers_and_times_only(bot: ConsoleBot):
    """A coach's export lists their profile and the cases they coached, not the member."""
    await connected(bot)
    data = exported(await bot.say("/headsup export", as_="coach"))
    assert data["as_coach"]["profile"]["on_duty"] is True
    assert [c["case"] for c in data["as_coach"]["cases_coached"]] == ["H-1001"]
    text = json.dumps(data)
    assert MEMBER not in text and "ofsted-kestrel" not in text


async def test_export_lists_event_replies(bot: ConsoleBot):
    """The member's RSVPs are in the export with the event's id, title and answer."""
    await bot.say(f'/event create "Heads together" "2026-01-13 19:00" 60 {LINK}', as_="coordinator")
    await bot.say(":click going", as_=MEMBER)
    data = exported(await bot.say("/headsup export", as_=MEMBER))
    [reply] = data["events"]["replies"]
    assert (reply["event"], reply["title"], reply["answer"]) == ("E1", "Heads together", "going")


async def test_export_lists_the_events_and_series_a_coordinator_created(bot: ConsoleBot):
    """A coordinator's export names the events and the weekly series they created."""
    await bot.say(
        "/event create", "Heads together", "2026-01-13 19:00", "60", LINK, "", "2026-02-24",
        as_="coordinator",
    )  # fmt: skip
    data = exported(await bot.say("/headsup export", as_="coordinator"))
    [series] = data["events"]["weekly_series_you_created"]
    assert (series["title"], series["until"]) == ("Heads together", "2026-02-24")
    assert series["weekly_at"] == "19:00 (Europe/London)"
    assert data["events"]["events_you_created"][0]["event"] == "E1"


async def test_a_half_rotated_database_reads_in_full_with_both_keys(make_bot, db: TestDatabase):
    """Stopped halfway through `rotate-key`, the data is part under the new key and part under
    the old: a bot given both keys (new first) still reads every note and word."""
    old, new = Cipher.generate_key(), Cipher.generate_key()
    first = await make_bot(storage={"encryption_key": old})
    await note_in(first)
    await first.say(f"/support {WORDS}", ":click connect", as_=MEMBER)
    await first.stop()
    database = Database(db.url, schema=db.schema)

    def stop_after_one_batch(_count) -> None:
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            await rotate_keys(database, f"{new},{old}", batch=1, after_batch=stop_after_one_batch)
    finally:
        await database.close()
    both = await make_bot(storage={"encryption_key": f"{new},{old}"})
    data = exported(await both.say("/headsup export", as_=MEMBER))
    text = json.dumps(data)
    assert NOTE in text and WORDS in text


async def test_privacy_text_points_to_export_and_forget_me(bot: ConsoleBot):
    """`/headsup privacy` tells the member how to get a copy and how to delete it all."""
    out = await bot.say("/headsup privacy", as_=MEMBER)
    assert "`/headsup export` gives you a file" in out
    assert "`/headsup forget-me` deletes all of it, after you confirm" in out


# --- forget-me: asking ----------


async def test_forget_me_explains_and_asks_before_deleting(bot: ConsoleBot):
    """`/headsup forget-me` explains in plain words, offers confirm and keep, deletes nothing."""
    await note_in(bot)
    out = await bot.say("/headsup forget-me", as_=MEMBER)
    assert "This deletes everything HeadsUp stores about you" in out
    assert "can't be undone" in out and "/headsup export" in out
    assert "[1] Delete everything  [2] Keep my data" in out
    assert await count(bot, Member) == 1 and await count(bot, CheckinWeek) == 1


async def test_keep_my_data_deletes_nothing(bot: ConsoleBot):
    """*Keep my data* says so and leaves every row in place."""
    await note_in(bot)
    out = await bot.say("/headsup forget-me", ":click keep my data", as_=MEMBER)
    assert "nothing has been deleted" in out
    assert await count(bot, Member) == 1 and await count(bot, CheckinWeek) == 1


# --- forget-me: deleting ----------


async def test_forget_me_deletes_every_trace(make_bot):
    """After confirming, no row anywhere holds the member's id, name, note or words."""
    bot = await make_bot(support={"keep_transcripts": True})
    await note_in(bot)
    await connected(bot)
    await bot.say(FROM_COACH, as_="coach")
    await bot.say(FROM_MEMBER, as_=MEMBER)
    await bot.say(f'/event create "Heads together" "2026-01-13 19:00" 60 {LINK}', as_="coordinator")
    await bot.say(":click going", as_=MEMBER)
    before = await everything_stored(bot)
    assert all(s in before for s in (MEMBER, NOTE, WORDS, FROM_MEMBER))
    out = await forget(bot)
    assert "everything HeadsUp stored about you has been deleted" in seen_by(out, MEMBER)
    stored = await everything_stored(bot)
    for trace in (MEMBER, NOTE, WORDS, FROM_COACH, FROM_MEMBER):
        assert trace not in stored
    assert await count(bot, Member, col(Member.name) == MEMBER) == 0
    assert await count(bot, EventRsvp) == 0 and await count(bot, CaseMessage) == 0


async def test_forgotten_case_stays_as_an_anonymous_shell(bot: ConsoleBot):
    """The case keeps its number and times, without member, words or feedback; the audit trail
    stays with no step naming the member."""
    await connected(bot)
    await bot.say(":click close this conversation", ":click 5", as_=MEMBER)
    member_id = (await case(bot)).member_id
    await forget(bot)
    shell = await case(bot)
    assert (shell.member_id, shell.words, shell.feedback) == (None, None, None)
    assert shell.closed_at is not None and shell.coach_member_id is not None
    async with bot.app.database.session() as session:
        steps = (await session.exec(select(CaseEvent).where(CaseEvent.case_id == 1))).all()
    assert steps and {s.kind for s in steps} >= {"created", "accepted", "closed", "feedback"}
    assert member_id is not None and all(s.actor_member_id != member_id for s in steps)
    assert all(s.detail == "" for s in steps if s.actor_role == "member")


async def test_forget_me_closes_an_open_case_and_tells_the_coach_without_a_name(bot: ConsoleBot):
    """An active case is closed first; the coach gets a kind DM with the number and no name."""
    await bot.say("/coach on", as_="coach")
    await bot.say(f"/support {WORDS}", ":click share my name", ":click connect", as_=MEMBER)
    await bot.say(":click accept", as_="coach")
    out = await forget(bot)
    told = seen_by(out, "coach")
    assert "H-1001 is now closed: the member has left HeadsUp" in told
    assert MEMBER not in told and WORDS not in told
    assert (await case(bot)).status == CaseStatus.CLOSED


async def test_forget_me_withdraws_a_waiting_request(bot: ConsoleBot):
    """A request still waiting for a coach is closed and the offer withdrawn, naming nobody."""
    await bot.say("/coach on", as_="coach")
    await bot.say(f"/support {WORDS}", ":click connect", as_=MEMBER)
    out = await forget(bot)
    assert "H-1001: the member withdrew it" in seen_by(out, "coach")
    assert MEMBER not in seen_by(out, "coach")
    assert (await case(bot)).status == CaseStatus.CLOSED
    assert "H-1001" not in await bot.advance("1h")  # nobody else is offered it


async def test_forget_me_drops_waiting_messages_about_the_case(bot: ConsoleBot):
    """A message about the case not yet delivered to the coach is never delivered."""
    await connected(bot)
    await bot.say("/headsup forget-me", as_=MEMBER)
    services = bot.app.services
    async with bot.app.database.session() as session:
        coach_id = (await case(bot)).coach_member_id
        assert coach_id is not None
        await services.outbox.send(
            session,
            bot.clock.now(),
            ToMember(coach_id),
            Message(f"Member H-1001: {FROM_MEMBER}", (Button("Reply", "support.reply:1"),)),
        )
        await session.commit()
    out = await bot.say(":click delete everything", as_=MEMBER)
    assert FROM_MEMBER not in out
    pending = await count(bot, OutboxMessage, col(OutboxMessage.status) == OutboxStatus.PENDING)
    assert pending == 0


async def test_forget_me_updates_the_reply_counts_of_an_event(bot: ConsoleBot):
    """A forgotten member's *Going* leaves the announcement's count."""
    await bot.say(f'/event create "Heads together" "2026-01-13 19:00" 60 {LINK}', as_="coordinator")
    await bot.say(":click going", as_=MEMBER)
    out = await forget(bot)
    assert "[edited #announcements]" in out and "[1] Going (0)" in out


async def test_forgetting_a_coach_hands_their_case_to_another_coach(bot: ConsoleBot):
    """A coach who leaves mid-conversation: the member is told, and the next coach offered it."""
    await connected(bot)
    await bot.say("/coach on", as_="coach2")
    out = await forget(bot, "coach")
    assert "your coach has had to leave HeadsUp" in seen_by(out, MEMBER)
    assert "A member is asking for support: H-1001" in seen_by(out, "coach2")
    shell = await case(bot)
    assert (shell.status, shell.coach_member_id) == (CaseStatus.WAITING, None)
    assert await count(bot, CoachProfile) == 1  # coach2's only


async def test_forgetting_a_coach_with_a_waiting_offer_moves_the_case_on(bot: ConsoleBot):
    """An offer waiting on a coach who leaves goes at once to the coordinators (nobody else)."""
    await bot.say("/coach on", as_="coach")
    await bot.say(f"/support {WORDS}", ":click connect", as_=MEMBER)
    out = await forget(bot, "coach")
    assert "[#coordinators]" in out and "H-1001" in out
    assert (await case(bot)).status == CaseStatus.ESCALATED


async def test_confirm_pressed_by_someone_else_changes_nothing(bot: ConsoleBot):
    """A forged confirm for another member's id is refused and deletes nothing."""
    await note_in(bot)
    async with bot.app.database.session() as session:
        member = await session.get(Member, 1)
        assert member is not None
        stamp = privacy.created_stamp(member)
    await bot.say("/headsup help", as_=OTHER)
    reply = await bot.app.core.press(actor(OTHER), f"privacy.forget:1:{stamp}")
    assert "no longer does anything" in reply.messages[0].text
    assert await count(bot, Member) == 2 and await count(bot, CheckinWeek) == 1


async def test_old_confirm_after_forgetting_changes_nothing(bot: ConsoleBot):
    """Pressing the old confirm again, after starting afresh, deletes nothing new."""
    await note_in(bot)
    async with bot.app.database.session() as session:
        member = await session.get(Member, 1)
        assert member is not None
        action = f"privacy.forget:1:{privacy.created_stamp(member)}"
    await forget(bot)
    await bot.advance("1m")
    await note_in(bot)
    reply = await bot.app.core.press(actor(MEMBER), action)
    assert "no longer does anything" in reply.messages[0].text
    assert await count(bot, CheckinWeek) == 1


async def test_after_forget_me_the_same_user_starts_afresh(bot: ConsoleBot):
    """A later command by the same platform user makes a brand-new member, asked for consent."""
    await note_in(bot)
    await forget(bot)
    out = await bot.say("/checkin", as_=MEMBER)
    assert "[1] Yes, check in with me weekly  [2] Not now" in out
    assert await count(bot, Identity, col(Identity.user_id) == MEMBER) == 1
    assert await count(bot, CheckinWeek) == 0


async def test_forgotten_data_is_gone_from_the_sqlite_files(make_bot, db: TestDatabase):
    """After forget-me and a clean stop, the raw database file (and any -wal) holds neither the
    member's user id and name nor their note or words."""
    if db.backend != "sqlite":
        pytest.skip("reads the SQLite file itself")
    bot = await make_bot(support={"keep_transcripts": True})
    await note_in(bot)
    await connected(bot)
    await bot.say(FROM_MEMBER, as_=MEMBER)
    await forget(bot)
    await bot.app.stop()
    raw = sqlite_files(db)()
    assert b"coach" in raw  # the file is readable as text where it keeps names
    for trace in (MEMBER, NOTE, WORDS, FROM_MEMBER):
        assert trace.encode() not in raw


async def stored_ciphertexts(bot: ConsoleBot) -> set[bytes]:
    """Every encrypted value in the database now (notes, words, kept messages, payloads)."""
    found: set[bytes] = set()
    async with bot.app.database.session() as session:
        conn = await session.connection()
        for table in SQLModel.metadata.sorted_tables:
            for row in (await conn.execute(table.select())).all():
                found |= {v.encode() for v in row if isinstance(v, str) and v.startswith("gAAAA")}
    return found


async def test_forgotten_ciphertext_is_gone_from_the_sqlite_files(make_bot, db: TestDatabase):
    """The member's note and words are stored encrypted, so their plain text was never in the
    file: after forget-me and a clean stop, none of the encrypted values stored before is
    either (a key leaked later could not bring them back)."""
    if db.backend != "sqlite":
        pytest.skip("reads the SQLite file itself")
    bot = await make_bot(support={"keep_transcripts": True})
    await note_in(bot)
    await connected(bot)
    await bot.say(FROM_COACH, as_="coach")
    await bot.say(FROM_MEMBER, as_=MEMBER)
    before = await stored_ciphertexts(bot)
    assert len(before) >= 4  # the note, the words and both kept messages at least
    raw = sqlite_files(db)()
    assert all(token in raw for token in before)  # the search can find them
    await forget(bot)
    await bot.app.stop()
    raw = sqlite_files(db)()
    assert [t for t in before if t in raw] == []


async def test_a_forgotten_coach_and_coordinator_leave_no_trace_in_the_files(
    make_bot, db: TestDatabase
):
    """A coach who coached a case (with a kept transcript) and a coordinator who posted an
    event and replied to it: after each forgets themselves and the bot stops, the raw file holds
    neither user id nor the coach's relayed words (the event itself stays, as documented)."""
    if db.backend != "sqlite":
        pytest.skip("reads the SQLite file itself")
    coach, coordinator = "bramblewick-coach", "fennimore-coordinator"
    bot = await make_bot(
        support={"keep_transcripts": True},
        console={"user": MEMBER, "coaches": [coach], "coordinators": [coordinator]},
    )
    await bot.say("/coach on", as_=coach)
    await bot.say(f"/support {WORDS}", ":click connect", as_=MEMBER)
    await bot.say(":click accept", FROM_COACH, as_=coach)
    await bot.say(f'/event create "Heads gathering" "2026-01-13 19:00" 60 {LINK}', as_=coordinator)
    await bot.say(":click going", as_=coordinator)
    coach_lines = {
        t for t in await stored_ciphertexts(bot) if bot.app.cipher.decrypt(t.decode()) == FROM_COACH
    }
    assert coach_lines
    await forget(bot, coach)
    await forget(bot, coordinator)
    await bot.app.stop()
    raw = sqlite_files(db)()
    assert b"Heads gathering" in raw  # the file is searchable, and the event stays
    for trace in (coach.encode(), coordinator.encode(), *coach_lines):
        assert trace not in raw


async def test_forget_me_empties_the_write_ahead_log(make_bot, db: TestDatabase):
    """Straight after forget-me, while the bot still runs, neither SQLite file holds the member:
    the log was checkpointed into the database file, whose freed space was zeroed."""
    if db.backend != "sqlite":
        pytest.skip("reads the SQLite file itself")
    bot = await make_bot()
    await note_in(bot)
    await connected(bot)
    files = sqlite_files(db)
    assert MEMBER.encode() in files()
    await forget(bot)
    assert MEMBER.encode() not in files()


# --- retention ----------


async def test_note_is_purged_when_its_retention_ends(make_bot):
    """A note answered now is kept until `note_retention_days` have passed, then deleted."""
    bot = await make_bot(privacy={"note_retention_days": 7})
    await note_in(bot)
    await bot.advance("6d23h59m")
    assert await count(bot, CheckinWeek, col(CheckinWeek.note).is_not(None)) == 1
    await bot.advance("1m")
    assert await count(bot, CheckinWeek, col(CheckinWeek.note).is_not(None)) == 0
    assert await count(bot, CheckinWeek, col(CheckinWeek.score) == 4) == 1  # the answer stays


async def test_closed_case_words_and_transcript_are_purged_after_retention(make_bot):
    """A closed case's words and kept messages go `case_text_retention_days` after closing."""
    bot = await make_bot(
        support={"keep_transcripts": True}, privacy={"case_text_retention_days": 2}
    )
    await connected(bot)
    await bot.say(FROM_MEMBER, as_=MEMBER)
    await bot.say(":click close this conversation", as_=MEMBER)
    await bot.advance("1d23h")
    assert (await case(bot)).words is not None and await count(bot, CaseMessage) == 1
    await bot.advance("1h")
    assert (await case(bot)).words is None and await count(bot, CaseMessage) == 0
    assert (await case(bot)).closed_at is not None  # the case itself stays


async def test_open_case_words_are_never_purged(make_bot):
    """An open conversation keeps its words however long it lasts."""
    bot = await make_bot(privacy={"case_text_retention_days": 1})
    await connected(bot)
    await bot.advance("3d")
    assert (await case(bot)).words is not None


async def test_purge_runs_in_batches_and_again_finds_nothing(make_bot, monkeypatch):
    """With a batch of one, three old notes all go; a second run purges nothing."""
    bot = await make_bot()
    for name in (MEMBER, OTHER, "third-member"):
        await note_in(bot, name)
    monkeypatch.setattr(privacy, "BATCH", 1)
    later = bot.clock.now() + timedelta(days=366)
    assert await privacy.purge_expired(bot.app.services, later) == 3
    assert await privacy.purge_expired(bot.app.services, later) == 0
    assert await count(bot, CheckinWeek, col(CheckinWeek.note).is_not(None)) == 0


async def test_event_ids_are_forgotten_a_day_after_they_were_seen(bot: ConsoleBot):
    """The ids kept to recognise a repeated delivery go after a day; until then they stay."""
    await bot.app.core.command(Actor("console", MEMBER, MEMBER), "headsup", "help", event_id="e1")
    await bot.advance("23h59m")
    assert await count(bot, PlatformEvent) == 1
    await bot.advance("2m")
    assert await count(bot, PlatformEvent) == 0
