"""Whatever arrives at ``/slack/events``, canary-bot answers it and changes nothing it must not.

A property test sends the running process (HTTP mode, real control plane) about a
thousand generated requests: ``/canary`` texts from a small grammar and from random
text, button clicks with random action ids and values, unknown releases and missing
fields, the same requests with forged, stale or tampered signatures, bodies over the
1 MiB limit, and bodies that are not what Slack sends (broken JSON, wrong types, bytes
that are not UTF-8). For each one:

- a request with a valid signature is acknowledged (HTTP 200) and the person gets a
  helpful answer: an ephemeral text in the ack, one post to the ``response_url``, or
  the start form; never the "something went wrong" text of an unexpected exception.
  Interactions no listener takes (an action id canary-bot never renders) get Bolt's
  404 "unhandled request", which is what Slack shows as a failed interaction;
- a request whose signature does not verify gets 401, and nothing is posted anywhere;
- a body over 1 MiB gets 413 before anything else is looked at;
- the process keeps serving (``/healthz`` answers 200) and no CanaryRelease is created
  or changed: every generated sender is either refused by the authorization rules or
  asks about a release that cannot be steered (finished, or in a namespace nobody may
  touch), and no Deployment exists that a start could target.

Bodies Slack never sends (broken JSON, fields of the wrong type, bytes that are not
UTF-8) get 401 when their signature does not verify, and never a 5xx when it does: the
signature is checked on the raw bytes before anything parses them. Fixed cases of each
kind are pinned by the regression tests at the end of this module.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s

from bot.handlers.control_buttons import ACTION_IDS, ACTIONS
from bot.operations import describe_failure
from bot.render.slack_reply import slack_text
from rollout.kube import Kube
from rollout.models import CanaryReleaseSpec, CanaryReleaseStatus, Phase
from rollout.store import ReleaseStore
from sandbox import slack_requests as builders
from sandbox.slack_fake import SlackFake
from sandbox.slack_requests import SlashCommandFields
from tests.bot.harness import ALICE, BOB, MALLORY, config_for, environment, running_bot
from tests.fixtures.slack import SlackRequests, eventually

pytestmark = pytest.mark.cluster

CHANNEL = "C0DEPLOYS"
RELEASES_PATH = "/apis/canarybot.io/v1alpha1/canaryreleases"
BODY_LIMIT = 1024 * 1024  # bot.web's client_max_size
# What a person reads when a handler met an exception it did not expect.
UNEXPECTED = slack_text(describe_failure(RuntimeError()))

EXAMPLES = 1000


# -- the requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One request and what its answer must be."""

    kind: str
    body: bytes
    headers: dict[str, str]
    # HTTP statuses that are a correct answer; empty: a signed body Slack never sends,
    # which may get any answer below 500 (see ``check_answer``)
    statuses: frozenset[int]
    # where the person is answered after an empty ack, when they must be
    response_url: str | None = None
    trigger_id: str | None = None
    # whether nothing may be posted to this request's response_url (forged requests)
    silent: bool = False
    note: str = ""

    def describe(self) -> str:
        """The request for failure messages (bodies cut short)."""
        return f"{self.kind} {self.note} body={self.body[:300]!r}"


@dataclass(frozen=True)
class World:
    """What the requests can name: the two namespaces and their releases."""

    namespace: str  # the people in the config may act here; no Deployments exist
    other: str  # nobody may act here
    done: str  # a Succeeded release in ``namespace``
    live: str  # a Progressing release in ``other``


USERS = st.one_of(
    st.sampled_from([ALICE, BOB, MALLORY]), st.from_regex(r"U[A-Z0-9]{2,10}", fullmatch=True)
)
VERBS = [
    "start",
    "plan",
    "status",
    "list",
    "history",
    "help",
    *ACTIONS,
    "strat",
    "rollback",
    "delete",
    "--help",
    "",
]


def tokens(world: World) -> st.SearchStrategy[str]:
    """Words a ``/canary`` text is made of: names, flags, values and oddities."""
    names = [world.done, world.live, "podinfo", "nginx", world.namespace, world.other]
    odd = [
        "-n",
        "kube-system",
        "default",
        "--max",
        "--step",
        "--interval",
        "--threshold",
        "--profile",
        "quick",
        "--approval",
        "--reason",
        "image=nginx:1.27",
        "image=",
        "podinfod=stefanprodan/podinfo:6.0.3",
        "a=b=c",
        '"unclosed',
        "'",
        "<@U0ALICE|alice>",
        "<#C0DEPLOYS|deploys>",
        "<http://example.com|x>",
        "&lt;&gt;&amp;",
        "\u201cquoted\u201d",
        "\u2014",
        "\x00",
        "\t",
        "\U0001f680",
        "../../etc",
        "payload",  # Bolt once read any form with this word as an interaction
        "payload=x",
    ]
    return st.one_of(
        st.sampled_from(names + odd),
        st.integers(-(10**6), 10**6).map(str),
        st.from_regex(r"[a-z0-9][a-z0-9.-]{0,70}", fullmatch=True),
        st.from_regex(r"[0-9]{1,5}(ms|s|m|h|d|x)?", fullmatch=True),
        st.text(max_size=40),
    )


def command_texts(world: World) -> st.SearchStrategy[str]:
    """``/canary`` texts: from the grammar, random, or longer than Slack allows."""
    structured = st.builds(
        lambda verb, rest: " ".join([verb, *rest]),
        st.sampled_from(VERBS),
        st.lists(tokens(world), max_size=8),
    )
    too_long = st.integers(4001, 12000).map(lambda n: "x" * n)
    return st.one_of(structured, structured, st.text(max_size=300), too_long)


def button_values(world: World) -> st.SearchStrategy[str | None]:
    """Button values: the releases' own, other releases, and junk."""
    seq = st.integers(0, 10**9)
    return st.one_of(
        seq.map(lambda n: f"{world.namespace}/{world.done}@{n}"),
        seq.map(lambda n: f"{world.other}/{world.live}@{n}"),
        seq.map(lambda n: f"{world.namespace}/no-such-release@{n}"),
        st.from_regex(r"[a-z0-9-]{1,20}/[a-z0-9-]{1,20}@[0-9]{1,4}", fullmatch=True),
        st.text(max_size=80),
        st.none(),
    )


ACTION_ID_STRATEGY = st.one_of(
    st.sampled_from([f"canary_{a}" for a in ACTIONS]),
    st.sampled_from([f"canary_{a}" for a in ACTIONS]),
    st.sampled_from([f"canary_{a}" for a in ACTIONS]),
    st.sampled_from(["canary_delete", "canary_", "canary_ABORT", "approve", "button-1"]),
    st.text(max_size=30),
)
# Fields a block_actions payload may arrive without (or with junk in) and still be routed
# to the listener; Slack always sends type, actions and a response_url for message buttons.
OPTIONAL_FIELDS = [
    "user",
    "channel",
    "container",
    "message",
    "team",
    "api_app_id",
    "trigger_id",
    "state",
    "enterprise",
    "is_enterprise_install",
    "token",
]
FORGERIES = ("stale", "wrong_secret", "tampered", "future", "garbage", "missing")


class Requests:
    """Builds probes; the response URLs and trigger ids come from the Slack fake."""

    def __init__(self, fake: SlackFake, secret: str, world: World) -> None:
        self.fake = fake
        self.secret = secret
        self.world = world

    def sign(self, body: bytes, forgery: str | None = None) -> builders.SignedRequest:
        """Sign as Slack does, or forge the signature in one of ``FORGERIES``' ways."""
        if forgery in (None, "stale", "wrong_secret", "tampered"):
            return builders.sign(
                body,
                signing_secret=self.secret,
                stale=forgery == "stale",
                wrong_secret=forgery == "wrong_secret",
                tampered=forgery == "tampered",
            )
        if forgery == "future":  # more than 300 s ahead is as stale as behind
            return builders.sign(body, signing_secret=self.secret, timestamp=int(time.time()) + 900)
        signed = builders.sign(body, signing_secret=self.secret)
        headers = dict(signed.headers)
        if forgery == "garbage":
            headers["X-Slack-Signature"] = "v0=" + uuid.uuid4().hex * 2
        else:
            headers.pop("X-Slack-Signature")
        return builders.SignedRequest(body, headers)

    def slash(self, text: str, user: str, forgery: str | None) -> Probe:
        """A ``/canary`` command."""
        url = self.fake.new_response_url(user_id=user)
        trigger = self.fake.new_trigger_id()
        payload = builders.slash_command_payload(
            text=text, user_id=user, response_url=url, trigger_id=trigger
        )
        request = self.sign(builders.form_body(payload), forgery)
        if forgery is not None:
            return Probe("slash", *request, frozenset({401}), url, silent=True, note=forgery)
        return Probe("slash", *request, frozenset({200}), url, trigger, note=repr(text[:200]))

    def click(
        self,
        action_id: str,
        value: str | None,
        user: str,
        dropped: set[str],
        junk: dict[str, Any],
        forgery: str | None,
    ) -> Probe:
        """A button click (``block_actions``), possibly missing fields or with junk in some."""
        url = self.fake.new_response_url(user_id=user, kind="actions")
        payload = builders.block_actions_payload(action_id, value, user_id=user, response_url=url)
        for name in dropped:
            payload.pop(name, None)
        payload.update(junk)
        request = self.sign(builders.interactive_body(payload), forgery)
        note = f"{action_id!r} {value!r} without {sorted(dropped)} junk {junk}"
        if forgery is not None:
            return Probe("click", *request, frozenset({401}), url, silent=True, note=forgery)
        if junk:
            # a field of the wrong type: Slack never sends one; any answer below 500
            return Probe("junk", *request, frozenset(), url, note=note)
        if ACTION_IDS.match(action_id):
            return Probe("click", *request, frozenset({200}), url, note=note)
        # no listener takes it: Bolt answers 404 "unhandled request"; nothing is told
        return Probe("click", *request, frozenset({404}), url, silent=True, note=note)

    def oversize(self, size: int, forgery: str | None) -> Probe:
        """A body over the limit, signed or not."""
        body = b"text=" + b"a" * (size - 5)
        request = self.sign(body, forgery)
        return Probe("oversize", *request, frozenset({413}), note=f"{size} bytes {forgery}")

    def malformed(self, body: bytes, forgery: str | None) -> Probe:
        """A body Slack never sends: 401 unless signed, then any answer below 500."""
        request = self.sign(body, forgery)
        if forgery is not None:
            return Probe("malformed", *request, frozenset({401}), silent=True)
        return Probe("malformed", *request, frozenset())


def probes(requests: Requests) -> st.SearchStrategy[Probe]:
    """Every kind of request, mostly well-formed ones."""
    world = requests.world
    forgery = st.one_of(st.none(), st.none(), st.sampled_from(FORGERIES))
    junk_value = st.one_of(st.none(), st.text(max_size=10), st.integers())
    slash = st.builds(requests.slash, command_texts(world), USERS, forgery)
    click = st.builds(
        requests.click,
        ACTION_ID_STRATEGY,
        button_values(world),
        USERS,
        st.sets(st.sampled_from(OPTIONAL_FIELDS), max_size=4),
        st.one_of(
            st.just({}),
            st.just({}),
            st.just({}),
            st.dictionaries(
                st.sampled_from(["user", "channel", "team"]), junk_value, min_size=1, max_size=2
            ),
        ),
        forgery,
    )
    oversize = st.builds(
        requests.oversize,
        st.sampled_from([BODY_LIMIT + 1, 2 * BODY_LIMIT, 3 * BODY_LIMIT]),
        st.one_of(st.none(), st.sampled_from(FORGERIES)),
    )
    broken = st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(lambda t: ("payload=" + t).encode()),
        st.text(max_size=100).map(lambda t: ("{" + t).encode()),
        st.sampled_from([b"payload=%5B1%5D", b"payload=1", b"payload=null", b"[1,2]"]),
    )
    malformed = st.builds(
        requests.malformed, broken, st.one_of(st.none(), st.sampled_from(FORGERIES))
    )
    return st.one_of(slash, slash, slash, click, click, click, oversize, malformed)


# -- sending from a worker thread -----------------------------------------------------------


class Sender:
    """A blocking HTTP client for hypothesis, which drives examples synchronously.

    The bot runs on the test's event loop; the examples run in a worker thread with an
    event loop of its own, so sending never blocks the process under test.
    """

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.loop = asyncio.new_event_loop()
        self.session: aiohttp.ClientSession | None = None

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        async with self.session.post(
            f"{self.base}/slack/events", data=body, headers=headers
        ) as response:
            return response.status, await response.text(errors="replace")

    async def _get(self, path: str) -> int:
        assert self.session is not None
        async with self.session.get(f"{self.base}{path}") as response:
            return response.status

    def post(self, probe: Probe) -> tuple[int, str]:
        """The status and body of the answer to ``probe``."""
        result: tuple[int, str] = self._run(self._post(probe.body, probe.headers))
        return result

    def health(self) -> int:
        """``/healthz``'s status."""
        status: int = self._run(self._get("/healthz"))
        return status

    def close(self) -> None:
        """Close the session and the loop (in the thread that used them)."""
        if self.session is not None:
            self._run(self.session.close())
        self.loop.close()


# -- the cluster ----------------------------------------------------------------------------


def release_spec() -> CanaryReleaseSpec:
    """A minimal spec (no engine runs here, so it only has to be valid)."""
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
            "images": {"podinfod": "stefanprodan/podinfo:6.0.3"},
            "analysis": {"interval": "1m", "maxWeight": 50, "stepWeight": 10},
        }
    )


async def put_release(store: ReleaseStore, namespace: str, name: str, phase: Phase) -> None:
    """Create a release and give it ``phase`` as the engine would have."""
    created = await store.create(namespace, name, release_spec())
    status = CanaryReleaseStatus(phase=phase, canary_weight=10 if phase == Phase.PROGRESSING else 0)
    await store.write_status(created, status)


@contextmanager
def extra_namespace(api: k8s.ApiClient) -> Iterator[str]:
    """A second namespace, deleted afterwards."""
    core = k8s.CoreV1Api(api)
    name = f"t-hostile-other-{uuid.uuid4().hex[:6]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


async def snapshot(kube: Kube, namespaces: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """Every CanaryRelease in the cluster; resourceVersions for those in ``namespaces``.

    Other namespaces may hold releases of earlier tests being garbage-collected, whose
    versions change on their own; a release that appears anywhere would still show.
    """
    items = (await kube.request("GET", RELEASES_PATH)).get("items", [])
    found = {}
    for item in items:
        meta = item["metadata"]
        key = (meta["namespace"], meta["name"])
        found[key] = meta["resourceVersion"] if key[0] in namespaces else "-"
    return found


# -- the property test ----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A probe and whether its empty ack promised an answer later."""

    probe: Probe
    promises_reply: bool


@dataclass
class Outcome:
    """What the property test saw, checked again once all replies are in."""

    answered: list[Answer] = field(default_factory=list)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)

    def add(self, probe: Probe, status: int, body: str) -> None:
        """Count the answer; an empty 200 to a well-formed request promises a reply."""
        per_kind = self.statuses.setdefault(probe.kind, {})
        per_kind[status] = per_kind.get(status, 0) + 1
        promises = status == 200 and not body and not probe.silent and bool(probe.statuses)
        self.answered.append(Answer(probe, promises))


def check_answer(probe: Probe, status: int, body: str) -> None:
    """The HTTP answer alone: status, and the ack's own text when it carries one."""
    if not probe.statuses:
        assert status < 500, f"answered {status}: {body[:300]!r}\n{probe.describe()}"
        return
    assert status in probe.statuses, (
        f"answered {status} (wanted {sorted(probe.statuses)}): {body[:300]!r}\n{probe.describe()}"
    )
    if status == 200 and body:
        ack = json.loads(body)
        if "text" in ack:  # refusal of bad input or help, inside the ack
            assert ack.get("response_type") == "ephemeral", ack
            assert ack["text"].strip() and UNEXPECTED not in ack["text"], ack
    assert "Traceback" not in body


@asynccontextmanager
async def hostile_world(
    kube: Kube, kube_api_client: k8s.ApiClient, namespace: str
) -> AsyncIterator[World]:
    """The two namespaces with one release each."""
    store = ReleaseStore(kube)
    with extra_namespace(kube_api_client) as other:
        world = World(namespace, other, done="podinfo-done", live="podinfo-live")
        await put_release(store, namespace, world.done, Phase.SUCCEEDED)
        await put_release(store, other, world.live, Phase.PROGRESSING)
        yield world


async def test_hostile_requests_are_answered_and_change_nothing(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    env = environment(slack_fake, signing_secret=signing_secret)
    async with (
        hostile_world(kube, kube_api_client, namespace) as world,
        running_bot(env, config_for(namespace), kube) as bot,
    ):
        watched = (world.namespace, world.other)
        before = await snapshot(kube, watched)
        requests = Requests(slack_fake, signing_secret, world)
        outcome = Outcome()

        def explore() -> None:
            sender = Sender(bot.bound_port)

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            )
            @given(probe=probes(requests))
            def each(probe: Probe) -> None:
                status, body = sender.post(probe)
                check_answer(probe, status, body)
                outcome.add(probe, status, body)
                if len(outcome.answered) % 100 == 0:
                    assert sender.health() == 200, "the process stopped answering /healthz"

            try:
                each()
                assert sender.health() == 200, "the process stopped answering /healthz"
            finally:
                sender.close()

        await asyncio.to_thread(explore)
        await check_replies(slack_fake, outcome.answered)
        after = await snapshot(kube, watched)

    # Earlier tests' namespaces may still be deleting their releases: those may vanish,
    # but none may appear, and the watched namespaces must be exactly as they were.
    ours_before = {k: v for k, v in before.items() if k[0] in watched}
    ours_after = {k: v for k, v in after.items() if k[0] in watched}
    assert ours_after == ours_before, f"releases changed: before {before}, after {after}"
    appeared = set(after) - set(before)
    assert not appeared, f"releases appeared: {sorted(appeared)}"
    posted = [c.params.get("text") for c in slack_fake.calls("chat.postMessage")]
    assert posted == [], f"something was posted to a channel: {posted}"
    replies = sum(a.promises_reply for a in outcome.answered)
    print(f"answers by kind of request: {outcome.statuses}; replies checked: {replies}")


async def check_replies(fake: SlackFake, answered: list[Answer]) -> None:
    """Everyone who got an empty ack is answered once; forged requests never are."""

    def unanswered() -> list[str]:
        posted = {p.url for p in fake.response_url_posts()}
        opened = {str(c.params.get("trigger_id")) for c in fake.calls("views.open")}
        return [
            a.probe.describe()
            for a in answered
            if a.promises_reply
            and a.probe.response_url not in posted
            and a.probe.trigger_id not in opened
        ]

    await eventually(
        lambda: not unanswered(),
        within=60,
        interval=0.5,
        message="some acknowledged requests were never answered",
    )
    by_url: dict[str, list[dict[str, Any]]] = {}
    for post in fake.response_url_posts():
        by_url.setdefault(post.url, []).append(post.body)
    for answer in answered:
        probe = answer.probe
        posts = by_url.get(probe.response_url or "", [])
        if probe.silent:
            assert posts == [], f"a request nobody may act on was answered: {probe.describe()}"
            continue
        assert len(posts) <= 1, f"answered {len(posts)} times: {probe.describe()}"
        for body in posts:
            text = str(body.get("text", ""))
            assert text.strip(), f"an empty answer: {probe.describe()}"
            assert UNEXPECTED not in text, f"{text}\n{probe.describe()}"
            assert body.get("response_type") == "ephemeral", body


# -- bodies Slack never sends ---------------------------------------------------------------
# Fixed cases of what the property test generates at random. Bolt parses a request before
# it verifies the signature and fails on these bodies (a 500, also for unsigned ones), and
# it reads any form that mentions "payload" as an interaction; bot.web verifies the
# signature on the raw bytes first and hands Bolt only bodies it can parse.


@asynccontextmanager
async def bare_bot(kube: Kube, fake: SlackFake, secret: str) -> AsyncIterator[int]:
    """A bot in HTTP mode for one request; yields its port."""
    env = environment(fake, signing_secret=secret)
    async with running_bot(env, config_for("hostile-bodies"), kube) as bot:
        yield bot.bound_port


async def answer_to(port: int, request: builders.SignedRequest) -> int:
    """The status of the answer to ``request``."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/slack/events", data=request.body, headers=request.headers
        ) as response,
    ):
        return response.status


def unverifiable(secret: str) -> dict[str, builders.SignedRequest]:
    """Requests whose signature cannot be right, in bodies Bolt cannot parse."""
    clicked = builders.block_actions_payload("canary_abort", "x")
    clicked["user"] = 5
    return {
        "broken payload JSON, wrong secret": builders.sign(
            b"payload=%7Bnot", signing_secret=secret, wrong_secret=True
        ),
        "payload JSON is a list, stale": builders.sign(
            b"payload=%5B1%5D", signing_secret=secret, stale=True
        ),
        "user of the wrong type, wrong secret": builders.sign(
            builders.interactive_body(clicked), signing_secret=secret, wrong_secret=True
        ),
        "JSON-looking body, unsigned": builders.SignedRequest(
            b"{garbage", {"Content-Type": "application/json"}
        ),
        "bytes that are not UTF-8, unsigned": builders.SignedRequest(b"text=\xff\xfe", {}),
        "timestamp that is not a number": builders.SignedRequest(
            b"text=hi", {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}
        ),
        "timestamp too large for a float": builders.SignedRequest(
            b"text=hi", {"X-Slack-Request-Timestamp": "9" * 400, "X-Slack-Signature": "v0=00"}
        ),
    }


@pytest.mark.parametrize("case", list(unverifiable("-")))
async def test_a_body_bolt_cannot_parse_with_a_bad_signature_gets_401(
    case: str, kube: Kube, slack_fake: SlackFake, signing_secret: str
) -> None:
    async with bare_bot(kube, slack_fake, signing_secret) as port:
        status = await answer_to(port, unverifiable(signing_secret)[case])
    assert status == 401, f"{case}: answered {status}"


def signed_malformed(secret: str) -> dict[str, builders.SignedRequest]:
    """Correctly signed bodies that are not what Slack sends."""
    no_actions = builders.block_actions_payload("canary_abort", "x")
    no_actions["actions"] = []
    numeric_id = builders.block_actions_payload("canary_abort", "x")
    numeric_id["actions"] = [{"action_id": 7, "value": "x"}]
    bodies = {
        "broken payload JSON": b"payload=%7Bnot",
        "payload JSON is a list": b"payload=%5B1%5D",
        "bytes that are not UTF-8": b"text=\xff\xfe",
        "empty actions list": builders.interactive_body(no_actions),
        "numeric action_id": builders.interactive_body(numeric_id),
    }
    return {name: builders.sign(body, signing_secret=secret) for name, body in bodies.items()}


@pytest.mark.parametrize("case", list(signed_malformed("-")))
async def test_a_signed_body_slack_never_sends_gets_a_clean_rejection(
    case: str, kube: Kube, slack_fake: SlackFake, signing_secret: str
) -> None:
    async with bare_bot(kube, slack_fake, signing_secret) as port:
        status = await answer_to(port, signed_malformed(signing_secret)[case])
    assert 400 <= status < 500, f"{case}: answered {status}"


@pytest.mark.parametrize(
    "fields",
    [
        SlashCommandFields(text="status payload-api"),
        SlashCommandFields(text="list", channel_name="payload-team"),
    ],
    ids=["in the text", "in the channel name"],
)
async def test_a_command_that_mentions_payload_is_answered(
    fields: SlashCommandFields,
    kube: Kube,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    async with bare_bot(kube, slack_fake, signing_secret) as port:
        request = slack_requests.slash_command(**fields)
        status = await answer_to(port, request)
        assert status == 200, f"/canary {fields}: answered {status}"
        await eventually(slack_fake.response_url_posts, message="the person was never answered")
