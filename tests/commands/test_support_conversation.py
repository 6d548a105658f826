"""A support case after a coach accepts it: relaying both ways, anonymity, several cases, closing,
feedback and follow-up, stale and forged buttons, people who left, and the audit trail.

Set-up everywhere: "coach" goes on duty, alice asks with `/support …`, connects, and the coach
accepts (case H-1001, id 1). The clock is frozen at Monday 2026-01-05 09:00 UTC.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import delete
from sqlmodel import col, func, select

from bot.core import Actor, Role
from storage.models import Identity, OutboxMessage
from storage.support import (
    CaseEvent,
    CaseMessage,
    CaseStatus,
    CoachProfile,
    OfferStatus,
    SupportCase,
    SupportOffer,
)
from tests.harness import ConsoleBot

WORDS = "the governors meeting went badly"
FOLLOW_UP = "it's been a little while since your conversation with a coach"
FEEDBACK = "how helpful was it?"
_HEADER = re.compile(r"^\[(?:edited )?(?:DM|ephemeral) ([^\]]+)\]$|^\[(?:edited )?#[^\]]+\]$", re.M)


def seen_by(out: str, name: str) -> str:
    """Every block of `out` that went to `name` (their DMs and ephemerals, edits included)."""
    heads = list(_HEADER.finditer(out))
    blocks = []
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(out)
        if head.group(1) == name:
            blocks.append(out[head.start() : end])
    return "".join(blocks)


async def connected(bot: ConsoleBot, member: str = "alice", words: str = WORDS) -> str:
    """The coach on duty (once), `member` asks and connects, the coach accepts; all printed."""
    out = await bot.say("/coach on", as_="coach")
    out += await bot.say(f"/support {words}", ":click connect", as_=member)
    out += await bot.say(":click accept", as_="coach")
    return out


async def connect_second(bot: ConsoleBot, member: str = "bob", words: str = "a second worry"):
    """Another member's case, accepted by the same coach (already on duty)."""
    out = await bot.say(f"/support {words}", ":click connect", as_=member)
    return out + await bot.say(":click accept", as_="coach")


def actor(user: str) -> Actor:
    roles = {"coach": {Role.COACH}, "coach2": {Role.COACH}}.get(user, set())
    return Actor("console", user, user, frozenset(roles))


async def case(bot: ConsoleBot, case_id: int = 1) -> SupportCase:
    async with bot.app.database.session() as session:
        found = await session.get(SupportCase, case_id)
        assert found is not None
        return found


async def events(bot: ConsoleBot, case_id: int = 1) -> list[CaseEvent]:
    async with bot.app.database.session() as session:
        return list(
            (
                await session.exec(
                    select(CaseEvent)
                    .where(CaseEvent.case_id == case_id)
                    .order_by(col(CaseEvent.id))
                )
            ).all()
        )


async def kinds(bot: ConsoleBot, case_id: int = 1) -> list[str]:
    return [e.kind for e in await events(bot, case_id)]


async def outbox_count(bot: ConsoleBot) -> int:
    async with bot.app.database.session() as session:
        return (await session.exec(select(func.count()).select_from(OutboxMessage))).one()


async def everything_stored(bot: ConsoleBot) -> str:
    """Every column of every support and outbox row, as text (nothing decrypted)."""
    rows: list[str] = []
    async with bot.app.database.session() as session:
        for table in (SupportCase, SupportOffer, CoachProfile, CaseEvent, CaseMessage):
            rows += [repr(r.model_dump()) for r in (await session.exec(select(table))).all()]
        for row in (await session.exec(select(OutboxMessage))).all():
            rows.append(repr(row.model_dump()))
    return "\n".join(rows)


async def forget_identity(bot: ConsoleBot, user: str) -> None:
    """As if `user` left the platform: their identity rows are gone."""
    async with bot.app.database.session() as session:
        await session.exec(delete(Identity).where(col(Identity.user_id) == user))
        await session.commit()


# --- accepting ----------


async def test_member_is_told_a_coach_accepted(bot: ConsoleBot):
    """On accept the member gets a DM saying so, with *Share my name* and *Close*."""
    out = await connected(bot)
    told = seen_by(out, "alice")
    assert "Good news — a coach has accepted your request H-1001" in told
    assert "[1] Share my name  [2] Close this conversation" in told


async def test_coach_gets_the_members_words_on_accept(bot: ConsoleBot):
    """On accept the coach is given the case and the member's words, with Reply and Close."""
    out = await connected(bot)
    mine = seen_by(out, "coach")
    assert "H-1001 is yours. Anything you send me now goes to Member H-1001" in mine
    assert f"> {WORDS}\n[1] Reply  [2] Close" in mine


# --- relaying ----------


async def test_member_message_reaches_the_coach_with_reply_and_close(bot: ConsoleBot):
    """A member's DM goes to the coach as "Member H-1001: …" with Reply and Close."""
    await connected(bot)
    out = await bot.say("I couldn't sleep last night", as_="alice")
    assert "[DM coach]\nMember H-1001: I couldn't sleep last night\n[1] Reply  [2] Close" in out
    assert "[DM alice]" not in out


async def test_coach_message_reaches_the_member_with_reply_and_close(bot: ConsoleBot):
    """A coach's DM goes to the member as "Coach: …" with Reply and Close."""
    await connected(bot)
    out = await bot.say("I'm here — tell me more", as_="coach")
    assert "[DM alice]\nCoach: I'm here — tell me more\n[1] Reply  [2] Close" in out
    assert "Sent to" not in out  # one case: nothing to say about where it went


async def test_member_reply_form_reaches_the_coach(bot: ConsoleBot):
    """The member's *Reply* button opens a one-field form whose text is relayed."""
    await connected(bot)
    await bot.say("hello", as_="coach")
    out = await bot.say(":click reply", "thank you for answering", as_="alice")
    assert "[form Reply to your coach]" in out
    assert "[DM coach]\nMember H-1001: thank you for answering" in out
    assert "Sent to your coach." in seen_by(out, "alice")


async def test_second_support_while_active_is_relayed_not_a_new_case(bot: ConsoleBot):
    """`/support more words` during a conversation is relayed into the same case."""
    await connected(bot)
    out = await bot.say("/support it got worse today", as_="alice")
    assert "You're already talking with a coach (H-1001)" in out
    assert "[DM coach]\nMember H-1001: it got worse today" in out
    async with bot.app.database.session() as session:
        assert (await session.exec(select(func.count()).select_from(SupportCase))).one() == 1


async def test_relayed_text_is_not_stored_by_default(bot: ConsoleBot):
    """After delivery, no table holds the relayed words; no transcript row exists."""
    await connected(bot)
    await bot.say("zebra crossing secret", as_="alice")
    await bot.say("quokka answer secret", as_="coach")
    stored = await everything_stored(bot)
    assert "zebra" not in stored and "quokka" not in stored
    async with bot.app.database.session() as session:
        assert (await session.exec(select(CaseMessage))).all() == []
        payloads = (await session.exec(select(OutboxMessage.payload))).all()
        words = bot.app.cipher.decrypt((await session.get(SupportCase, 1)).words)
    assert payloads and all(p == "" for p in payloads)  # emptied once sent
    assert words == WORDS  # the relayed words were never added to the request


async def test_relayed_text_is_kept_encrypted_with_keep_transcripts(make_bot):
    """With keep_transcripts on, each relayed message is stored, encrypted, with its sender."""
    bot = await make_bot(support={"keep_transcripts": True})
    await connected(bot)
    await bot.say("zebra crossing secret", as_="alice")
    await bot.say("quokka answer secret", as_="coach")
    assert "zebra" not in await everything_stored(bot)
    async with bot.app.database.session() as session:
        kept = (await session.exec(select(CaseMessage).order_by(col(CaseMessage.id)))).all()
    assert [(m.case_id, m.sender, bot.app.cipher.decrypt(m.text)) for m in kept] == [
        (1, "member", "zebra crossing secret"),
        (1, "coach", "quokka answer secret"),
    ]


async def test_relayed_audit_rows_carry_no_text(bot: ConsoleBot):
    """Each relay adds a "relayed" audit row naming the side, with an empty detail."""
    await connected(bot)
    await bot.say("zebra crossing secret", as_="alice")
    await bot.say("quokka answer secret", as_="coach")
    relayed = [e for e in await events(bot) if e.kind == "relayed"]
    assert [(e.actor_role, e.detail) for e in relayed] == [("member", ""), ("coach", "")]


async def test_mentions_in_a_member_message_are_neutralised(bot: ConsoleBot):
    """A member's "@everyone" and "<!channel>" reach the coach broken up, never raw."""
    await connected(bot)
    out = await bot.say("help @everyone <!channel> @here", as_="alice")
    relayed = seen_by(out, "coach")
    assert "Member H-1001: help @" in relayed
    assert "@everyone" not in relayed and "<!channel>" not in relayed and "@here" not in relayed
    assert "everyone" in relayed and "!channel" in relayed  # still readable


async def test_mentions_in_a_coach_message_are_neutralised(bot: ConsoleBot):
    """A coach's "@here" reaches the member broken up too."""
    await connected(bot)
    out = await bot.say("ping @here", as_="coach")
    relayed = seen_by(out, "alice")
    assert "Coach: ping @" in relayed and "@here" not in relayed


async def test_mentions_in_the_first_words_are_neutralised_on_accept(bot: ConsoleBot):
    """The member's request words, shown to the coach on accept, can't mention everyone."""
    out = await connected(bot, words="tell @everyone <@&123> I quit")
    mine = seen_by(out, "coach")
    assert "I quit" in mine
    assert "@everyone" not in mine and "<@&123>" not in mine


async def test_long_message_is_relayed_whole_in_pieces(bot: ConsoleBot):
    """A 4,000-character DM arrives in labelled pieces, all words in order, buttons on the last."""
    await connected(bot)
    words = [f"word{i:04d}" for i in range(440)]
    out = await bot.say(" ".join(words), as_="alice")
    pieces = re.findall(r"^\[DM coach\]\n(Member H-1001: .*?)(?=\n\n|\Z)", out, re.M | re.S)
    assert len(pieces) == 3
    assert [p.endswith("[1] Reply  [2] Close") for p in pieces] == [False, False, True]
    assert re.findall(r"word\d{4}", out) == words


async def test_off_duty_coach_keeps_their_conversations(bot: ConsoleBot):
    """Going off duty stops new offers, not the conversations already accepted."""
    await connected(bot)
    await bot.say("/coach off", as_="coach")
    assert "[DM coach]\nMember H-1001: still there?" in await bot.say("still there?", as_="alice")
    assert "[DM alice]\nCoach: yes, still here" in await bot.say("yes, still here", as_="coach")


async def test_coordinator_who_took_a_case_talks_as_coach(bot: ConsoleBot):
    """A coordinator who pressed *Take it* relays both ways, shown to the member as "Coach"."""
    await bot.say(f"/support {WORDS}", ":click connect", as_="alice")
    out = await bot.say(":click take it", as_="coordinator")
    assert "Good news — a coach has accepted your request H-1001" in seen_by(out, "alice")
    assert "[DM alice]\nCoach: I've got this" in await bot.say("I've got this")
    assert "[DM coordinator]\nMember H-1001: thank you" in await bot.say("thank you", as_="alice")
    assert [(e.kind, e.actor_role) for e in await events(bot)][-3:] == [
        ("taken", "coordinator"),
        ("relayed", "coach"),  # the side they speak for
        ("relayed", "member"),
    ]


async def test_conversation_survives_a_restart(bot: ConsoleBot):
    """After a process restart, DMs still go both ways on the same case."""
    await connected(bot)
    await connect_second(bot)
    await bot.say("from alice", as_="alice")
    await bot.say(":click reply", "to alice", as_="coach")  # alice's case is now current
    await bot.restart()
    out = await bot.say("after the restart", as_="coach")
    assert "[DM alice]\nCoach: after the restart" in out and "[DM bob]" not in out
    assert "[DM coach]\nMember H-1002: me too" in await bot.say("me too", as_="bob")


# --- anonymity ----------


async def test_coach_never_sees_an_anonymous_members_name(bot: ConsoleBot):
    """Offer, accept, relays, forms, cases and closing: nothing the coach sees says "alice"."""
    out = await connected(bot)
    out += await bot.say("a message from me", as_="alice")
    out += await bot.say(":click reply", "an answer", "/coach cases", as_="coach")
    out += await bot.say(":click close this conversation", as_="alice")
    mine = seen_by(out, "coach")
    assert "Member H-1001" in mine and "has closed the conversation" in mine
    assert "alice" not in mine.lower()


async def test_share_my_name_tells_the_coach(bot: ConsoleBot):
    """*Share my name* mid-conversation tells the coach who it is, and is audited."""
    await connected(bot)
    out = await bot.say(":click share my name", as_="alice")
    assert "Done — your coach now knows your name." in seen_by(out, "alice")
    assert "Member H-1001 has chosen to share their name with you: alice." in seen_by(out, "coach")
    assert (await case(bot)).share_name is True
    assert (await kinds(bot))[-1] == "name_shared"


async def test_relays_show_the_name_once_shared(bot: ConsoleBot):
    """After sharing, the member's messages reach the coach as "alice (H-1001): …"."""
    await connected(bot)
    await bot.say(":click share my name", as_="alice")
    out = await bot.say("now you know me", as_="alice")
    assert "[DM coach]\nalice (H-1001): now you know me" in out


async def test_sharing_twice_changes_nothing(bot: ConsoleBot):
    """A second *Share my name* press says it's done already and tells the coach nothing new."""
    await connected(bot)
    await bot.say(":click share my name", as_="alice")
    out = await bot.app.core.press(actor("alice"), "support.reveal:1")
    assert "already knows your name" in out.messages[0].text
    assert (await kinds(bot)).count("name_shared") == 1


# --- a coach with two cases ----------


async def test_plain_dm_goes_to_the_last_case_and_says_which(bot: ConsoleBot):
    """With two cases, a coach's plain DM goes to the one accepted last and names it."""
    await connected(bot)
    await connect_second(bot)
    out = await bot.say("hello, I've got you", as_="coach")
    assert "[DM bob]\nCoach: hello, I've got you" in out
    assert "hello, I've got you" not in seen_by(out, "alice")
    assert "Sent to Member H-1002. You also have H-1001 open" in seen_by(out, "coach")


async def test_reply_under_the_other_members_message_goes_to_them_only(bot: ConsoleBot):
    """Reply under alice's message while bob's case is current: the form's text goes to alice."""
    await connected(bot)
    await connect_second(bot)
    await bot.say("from bob", as_="bob")
    await bot.say("from alice", as_="alice")
    out = await bot.say(":click reply", "just for alice", as_="coach")
    assert "[form Reply to Member H-1001]" in out
    assert "[DM alice]\nCoach: just for alice" in out
    assert "just for alice" not in seen_by(out, "bob")
    assert "Sent to Member H-1001." in seen_by(out, "coach")


async def test_reply_makes_that_case_current_for_plain_dms(bot: ConsoleBot):
    """After replying to alice's case, the coach's next plain DM goes to alice too."""
    await connected(bot)
    await connect_second(bot)
    await bot.say("from alice", as_="alice")
    await bot.say(":click reply", "first", as_="coach")
    out = await bot.say("and second")
    assert "[DM alice]\nCoach: and second" in out
    assert "Sent to Member H-1001. You also have H-1002 open" in out
    assert "[DM bob]" not in out


async def test_each_member_reaches_only_their_own_case(bot: ConsoleBot):
    """Two members' messages reach the coach labelled with their own case numbers."""
    await connected(bot)
    await connect_second(bot)
    out = await bot.say("alice speaking", as_="alice")
    out += await bot.say("bob speaking", as_="bob")
    mine = seen_by(out, "coach")
    assert "Member H-1001: alice speaking" in mine and "Member H-1002: bob speaking" in mine
    assert "[DM alice]" not in out and "[DM bob]" not in out


# --- closing ----------


async def test_member_close_tells_the_coach(bot: ConsoleBot):
    """The member closing: the coach is told, the case is closed by "member"."""
    await connected(bot)
    out = await bot.say(":click close this conversation", as_="alice")
    assert "[DM coach]\nMember H-1001 has closed the conversation. Thank you." in out
    closed = await case(bot)
    assert (closed.status, closed.closed_by) == (CaseStatus.CLOSED, "member")


async def test_member_close_offers_feedback_and_follow_up(bot: ConsoleBot):
    """The member who closes gets one message: feedback 1–5 and the follow-up question."""
    await connected(bot)
    out = await bot.say(":click close this conversation", as_="alice")
    told = seen_by(out, "alice")
    assert FEEDBACK in told and "check in with you in 7 days" in told
    assert "[1] 1  [2] 2  [3] 3  [4] 4  [5] 5  [6] Yes, follow up  [7] No, thank you" in told


async def test_feedback_is_stored(bot: ConsoleBot):
    """`:click 4` on the feedback message stores 4, audits it, and thanks the member."""
    await connected(bot)
    await bot.say(":click close this conversation", as_="alice")
    out = await bot.say(":click 4")
    assert "Thank you for telling us" in out
    assert (await case(bot)).feedback == 4
    assert (await kinds(bot))[-1] == "feedback"


async def test_follow_up_comes_once_after_followup_days(bot: ConsoleBot):
    """*Yes, follow up*: exactly one DM 7 days later, with *Talk to a coach*."""
    await connected(bot)
    await bot.say(":click close this conversation", ":click yes, follow up", as_="alice")
    assert FOLLOW_UP not in await bot.advance("6d23h59m")
    out = await bot.advance("1m")
    assert "[DM alice]" in out and FOLLOW_UP in out and "[1] Talk to a coach" in out
    assert FOLLOW_UP not in await bot.advance("14d")
    assert bot.transcript.count(FOLLOW_UP) == 1
    assert (await kinds(bot))[-2:] == ["followup_asked", "followed_up"]


async def test_follow_up_button_starts_a_new_request(bot: ConsoleBot):
    """*Talk to a coach* on the follow-up opens /support afresh: signposting, then the choice."""
    await connected(bot)
    await bot.say(":click close this conversation", ":click yes, follow up", as_="alice")
    await bot.advance("7d")
    out = await bot.say(":click talk to a coach", as_="alice")
    assert "not an emergency service" in out
    assert "only as Member H-1002" in out and "[1] Connect me with a coach" in out


async def test_follow_up_honours_followup_days(make_bot):
    """With followup_days = 3 the follow-up comes after three days."""
    bot = await make_bot(support={"followup_days": 3})
    await connected(bot)
    out = await bot.say(":click close this conversation", as_="alice")
    assert "check in with you in 3 days" in out
    await bot.say(":click yes, follow up")
    assert FOLLOW_UP in await bot.advance("3d")


async def test_no_follow_up_when_declined(bot: ConsoleBot):
    """*No, thank you*: no follow-up ever comes."""
    await connected(bot)
    await bot.say(":click close this conversation", ":click no", as_="alice")
    assert FOLLOW_UP not in await bot.advance("30d")
    closed = await case(bot)
    assert closed.followup_declined is True and closed.followup_due_at is None


async def test_coach_close_tells_the_member_and_asks_feedback(bot: ConsoleBot):
    """The coach closing: the member is told and gets the feedback message."""
    await connected(bot)
    out = await bot.say(":click close", as_="coach")
    assert "H-1001 is closed. Thank you for being there for them." in seen_by(out, "coach")
    told = seen_by(out, "alice")
    assert "Your coach has closed the conversation H-1001" in told and FEEDBACK in told
    assert (await case(bot)).closed_by == "coach"


async def test_withdraw_while_waiting_withdraws_the_offer(bot: ConsoleBot):
    """*Withdraw my request* before anyone accepts: no feedback, and the offer is edited."""
    await bot.say("/coach on", as_="coach")
    await bot.say(f"/support {WORDS}", ":click connect", as_="alice")
    out = await bot.say(":click withdraw", as_="alice")
    assert "Your request H-1001 is withdrawn" in out and FEEDBACK not in out
    assert "[edited DM coach]\nH-1001: the member withdrew it — thank you." in out
    async with bot.app.database.session() as session:
        statuses = (await session.exec(select(SupportOffer.status))).all()
    assert statuses == [OfferStatus.WITHDRAWN]
    assert (await case(bot)).status == CaseStatus.CLOSED


async def test_withdrawn_request_is_never_offered_again(bot: ConsoleBot):
    """After a withdrawal, time passing brings no new offer and no coordinator alert."""
    await bot.say("/coach on", as_="coach")
    await bot.say("/coach on", as_="coach2")
    await bot.say(f"/support {WORDS}", ":click connect", ":click withdraw", as_="alice")
    out = await bot.advance("1h")
    assert "A member is asking for support" not in out and "[#coordinators]" not in out


async def test_withdrawing_an_escalated_request_stands_the_coordinators_down(bot: ConsoleBot):
    """Withdrawn after escalation: the alert is edited to "closed" and re-alerts stop."""
    await bot.say(f"/support {WORDS}", ":click connect", as_="alice")
    out = await bot.say(":click withdraw")
    assert "[edited #coordinators]\nH-1001 has been closed." in out
    assert "[#coordinators]" not in await bot.advance("1h")


async def test_coach_closing_one_case_keeps_the_other(bot: ConsoleBot):
    """With two cases, closing one leaves the other active and plain DMs go to it."""
    await connected(bot)
    await connect_second(bot)
    await bot.say(":click close", as_="coach")  # under bob's case, the last accepted
    assert (await case(bot, 2)).status == CaseStatus.CLOSED
    out = await bot.say("back to you", as_="coach")
    assert "[DM alice]\nCoach: back to you" in out and "[DM bob]" not in out


# --- stale and forged buttons ----------


@pytest.mark.parametrize(
    ("user", "label"),
    [("coach", "reply"), ("coach", "close"), ("alice", "share my name"), ("alice", "close")],
)
async def test_buttons_of_a_closed_case_do_nothing(bot: ConsoleBot, user: str, label: str):
    """Reply, Close and Share my name on a closed case say it's closed and change nothing."""
    await connected(bot)
    await bot.say("before the end", as_="alice")
    await bot.say("noted", as_="coach")
    await bot.say(":click close this conversation", as_="alice")
    before = await kinds(bot)
    out = await bot.say(f":click {label}", as_=user)
    assert "This conversation (H-1001) has been closed, so that button no longer does anything" in (
        out
    )
    assert "[form" not in out and await kinds(bot) == before
    closed = await case(bot)
    assert closed.status == CaseStatus.CLOSED and closed.share_name is False


@pytest.mark.parametrize("user", ["bob", "coach2", "coordinator"])
@pytest.mark.parametrize("action", ["support.close:1", "support.reply:1", "support.reveal:1"])
async def test_someone_else_cannot_act_on_a_case(bot: ConsoleBot, user: str, action: str):
    """A forged Close/Reply/Share from anyone not on the case reveals nothing, changes nothing."""
    await connected(bot)
    before = await kinds(bot)
    reply = await bot.app.core.press(actor(user), action)
    assert reply.form is None
    text = " ".join(m.text for m in reply.messages)
    assert "no longer does anything" in text
    assert "H-1001" not in text and "alice" not in text and WORDS not in text
    assert (await case(bot)).status == CaseStatus.ACTIVE and await kinds(bot) == before


async def test_someone_else_cannot_submit_a_reply(bot: ConsoleBot):
    """A forged reply-form submission from bob is refused and relays nothing."""
    await connected(bot)
    queued = await outbox_count(bot)
    reply = await bot.app.core.submit(actor("bob"), "support.send:1", {"message": "hijack"})
    assert "no longer does anything" in reply.messages[0].text
    assert await outbox_count(bot) == queued


async def test_reply_form_submitted_after_close_sends_nothing(bot: ConsoleBot):
    """A reply form opened before the member closed, submitted after: refused, nothing queued."""
    await connected(bot)
    form = await bot.app.core.press(actor("coach"), "support.reply:1")
    assert form.form is not None and form.form.action == "support.send:1"
    await bot.say(":click close this conversation", as_="alice")
    queued = await outbox_count(bot)
    reply = await bot.app.core.submit(actor("coach"), "support.send:1", {"message": "too late"})
    assert "(H-1001) has been closed" in reply.messages[0].text
    assert await outbox_count(bot) == queued


async def test_the_coach_cannot_share_the_members_name(bot: ConsoleBot):
    """A forged *Share my name* from the case's own coach is refused; the member stays anonymous."""
    await connected(bot)
    reply = await bot.app.core.press(actor("coach"), "support.reveal:1")
    assert "no longer does anything" in reply.messages[0].text
    assert "alice" not in reply.messages[0].text
    assert (await case(bot)).share_name is False


async def test_forged_feedback_score_is_refused(bot: ConsoleBot):
    """`support.feedback:1:9` on a closed case is refused and stores nothing."""
    await connected(bot)
    await bot.say(":click close this conversation", as_="alice")
    reply = await bot.app.core.press(actor("alice"), "support.feedback:1:9")
    assert "no longer does anything" in reply.messages[0].text
    assert (await case(bot)).feedback is None


async def test_another_member_cannot_give_feedback(bot: ConsoleBot):
    """Bob pressing a forged feedback button on alice's closed case is refused."""
    await connected(bot)
    await bot.say(":click close this conversation", as_="alice")
    reply = await bot.app.core.press(actor("bob"), "support.feedback:1:5")
    assert "no longer does anything" in reply.messages[0].text
    assert (await case(bot)).feedback is None


# --- people who left ----------


async def test_coach_cannot_reach_a_member_who_left(bot: ConsoleBot):
    """The member's identity gone: the coach is told kindly and nothing is queued."""
    await connected(bot)
    await forget_identity(bot, "alice")
    queued, before = await outbox_count(bot), await kinds(bot)
    out = await bot.say("are you still there?", as_="coach")
    assert "I can't reach Member H-1001 any more — they may have left the network." in out
    assert "Nothing was sent." in out
    assert await outbox_count(bot) == queued and await kinds(bot) == before


async def test_member_is_told_kindly_when_their_coach_left(bot: ConsoleBot):
    """The coach's identity gone: the member's message is not lost silently — they're told."""
    await connected(bot)
    await forget_identity(bot, "coach")
    queued = await outbox_count(bot)
    out = await bot.say("hello?", as_="alice")
    assert "I can't reach your coach any more — they may have left the network." in out
    assert await outbox_count(bot) == queued


# --- after the close ----------


async def test_member_dm_after_close_gets_the_menu(bot: ConsoleBot):
    """Once closed, the member's DM is not relayed: they get the ordinary menu."""
    await connected(bot)
    await bot.say(":click close this conversation", as_="alice")
    out = await bot.say("one more thing", as_="alice")
    assert "[DM alice]\nHello — how can I help?" in out
    assert "[DM coach]" not in out and "one more thing" not in out


async def test_coach_dm_after_close_is_not_relayed(bot: ConsoleBot):
    """Once closed, the coach's DM gets the menu and reaches no member."""
    await connected(bot)
    await bot.say(":click close", as_="coach")
    out = await bot.say("one more thing", as_="coach")
    assert "Hello — how can I help?" in out and "[DM alice]" not in out


# --- the audit trail ----------


async def test_audit_trail_of_a_full_conversation(bot: ConsoleBot):
    """created, offered, accepted, relayed ×2, closed, feedback — in order, with roles."""
    await connected(bot)
    await bot.say("from the member", as_="alice")
    await bot.say("from the coach", as_="coach")
    await bot.say(":click close this conversation", ":click 5", as_="alice")
    trail = [(e.kind, e.actor_role) for e in await events(bot)]
    assert trail == [
        ("created", "member"),
        ("offered", "system"),
        ("accepted", "coach"),
        ("relayed", "member"),
        ("relayed", "coach"),
        ("closed", "member"),
        ("feedback", "member"),
    ]


async def test_audit_trail_names_the_actors_and_no_words(bot: ConsoleBot):
    """Each step names its actor by member id; no step's detail holds anyone's words."""
    await connected(bot)
    await bot.say("from the member", as_="alice")
    await bot.say(":click close", as_="coach")
    trail = await events(bot)
    closed = await case(bot)
    by_kind = {e.kind: e for e in trail}
    assert by_kind["created"].actor_member_id == closed.member_id
    assert by_kind["accepted"].actor_member_id == closed.coach_member_id
    assert by_kind["closed"].actor_role == "coach"
    assert all(WORDS not in e.detail and "from the member" not in e.detail for e in trail)
