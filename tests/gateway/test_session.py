"""The session's decisions, driven frame by frame without processes."""

from __future__ import annotations

from portcullis.gateway import frames as fr
from portcullis.gateway.frames import Oversize
from portcullis.policy.compiled import Rules, ServerRequests

from .conftest import Recorder, decode, make_session, msg


def call(rid: object, name: str, args: object = None) -> bytes:
    params: dict[str, object] = {"name": name}
    if args is not None:
        params["arguments"] = args
    return msg(id=rid, method="tools/call", params=params)


def test_allowed_call_forwards_original_bytes(recorder: Recorder) -> None:
    """An allowed tools/call reaches the server byte for byte and is audited."""
    s = make_session(recorder)
    raw = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"x"}}}'
    assert s.from_client(raw) == [("server", raw)]
    assert recorder.records[-1]["decision"] == "allow"
    assert recorder.records[-1]["tool"] == "echo"
    assert recorder.records[-1]["args"] == "hmac-sha256:x"


def test_denied_call_answers_is_error_with_reason(recorder: Recorder) -> None:
    """A denied tool is answered by the gateway with isError and the rule that fired."""
    s = make_session(recorder)
    [(dest, data)] = s.from_client(call(7, "delete_file", {"path": "/x"}))
    assert dest == "client"
    result = decode(data)["result"]
    assert result["isError"] is True
    assert "*delete*" in result["content"][0]["text"]
    assert decode(data)["id"] == 7
    assert recorder.records[-1]["rule"] == "tools.deny"


def test_default_deny_and_precedence() -> None:
    """Deny beats confirm beats allow beats the default."""
    s = make_session(tools=Rules(default="allow", allow=("x*",), confirm=("xy*",), deny=("xyz",)))
    assert "tools.deny" in s.from_client(call(1, "xyz"))[0][1].decode()
    assert "approval" in s.from_client(call(2, "xya"))[0][1].decode()
    assert s.from_client(call(3, "xa"))[0][0] == "server"
    assert s.from_client(call(4, "other"))[0][0] == "server"


def test_globs_are_case_sensitive() -> None:
    """A deny pattern in lower case does not cover an upper-case name, and vice versa."""
    s = make_session(tools=Rules(default="allow", deny=("*delete*",)))
    assert s.from_client(call(1, "DELETE_file"))[0][0] == "server"
    assert s.from_client(call(2, "xdelete"))[0][0] == "client"


def test_confirm_without_channel_is_denied(recorder: Recorder) -> None:
    """A confirm rule with no approval channel is a deny that says why."""
    s = make_session(recorder)
    result = decode(s.from_client(call(1, "write_file"))[0][1])["result"]
    assert result["isError"] is True
    assert "approval channel" in result["content"][0]["text"]
    assert recorder.records[-1]["rule"] == "tools.confirm"


def test_observe_mode_forwards_and_marks_unenforced(recorder: Recorder) -> None:
    """Observe mode forwards a call the policy would deny and audits enforced=false."""
    s = make_session(recorder, mode="observe")
    assert s.from_client(call(1, "delete_file"))[0][0] == "server"
    assert recorder.records[-1]["decision"] == "deny"
    assert recorder.records[-1]["enforced"] is False


def test_outcome_audit_failure_refuses_the_next_call(recorder: Recorder) -> None:
    """A failed outcome record does not lose the delivered result; the next call is refused."""
    s = make_session(recorder)
    s.from_client(call(1, "echo"))
    recorder.fail = True
    raw = msg(id=1, result={"content": []})
    assert s.from_server(raw) == [("client", raw)]
    s.after_send()
    [(dest, data)] = s.from_client(call(2, "echo"))
    assert dest == "client"
    assert decode(data)["result"]["isError"] is True


def test_audit_failure_refuses_calls(recorder: Recorder) -> None:
    """When the audit log cannot be written, an allowed call is refused."""
    s = make_session(recorder)
    recorder.fail = True
    [(dest, data)] = s.from_client(call(1, "echo"))
    assert dest == "client"
    assert "audit log cannot be written" in decode(data)["result"]["content"][0]["text"]


def test_duplicate_keys_refused(recorder: Recorder) -> None:
    """A tools/call with a duplicated key is refused: parsers disagree on which one wins."""
    s = make_session(recorder)
    raw = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete_file"}}'
    [(dest, data)] = s.from_client(raw)
    assert dest == "client"
    assert "duplicate key" in data.decode()
    assert recorder.records[-1]["rule"] == "protocol.strict-json"


def test_lone_surrogate_is_decoded_not_failed() -> None:
    """A string with a lone surrogate escape (valid JSON) is relayed, not rejected."""
    s = make_session()
    raw = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"\\ud800"}}}'
    assert s.from_client(raw) == [("server", raw)]
    s.from_server(
        b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\\udfff"}]}}'
    )


def test_bad_client_input_gets_standard_errors() -> None:
    """Invalid JSON, a batch, and a message without method get -32700/-32600 and the session lives."""
    s = make_session()
    assert decode(s.from_client(b"{not json")[0][1])["error"]["code"] == -32700
    assert decode(s.from_client(b"[1,2]")[0][1])["error"]["code"] == -32600
    assert decode(s.from_client(b'"x"')[0][1])["error"]["code"] == -32600
    assert decode(s.from_client(msg(id=3))[0][1])["error"]["code"] == -32600
    assert decode(s.from_client(msg(id=None, method="x"))[0][1])["error"]["code"] == -32600
    assert decode(s.from_client(msg(id=1.5, method="x"))[0][1])["error"]["code"] == -32600
    assert s.from_client(call(9, "echo"))[0][0] == "server"


def test_unknown_methods_pass_untouched() -> None:
    """Unknown and future methods and notifications are forwarded byte for byte."""
    s = make_session()
    raw = b'{"jsonrpc":"2.0","id":"a","method":"x-vendor/thing","params":{"z":[1,2.50]}}'
    assert s.from_client(raw) == [("server", raw)]
    note = b'{"jsonrpc":"2.0","method":"notifications/x","params":{}}'
    assert s.from_client(note) == [("server", note)]
    resp = b'{"jsonrpc":"2.0","id":"a","result":{"odd":1.0e3}}'
    assert s.from_server(resp) == [("client", resp)]


def test_ids_one_and_string_one_are_distinct() -> None:
    """Ids 1 and "1" are separate requests; a duplicate in-flight id is refused."""
    s = make_session()
    assert s.from_client(msg(id=1, method="ping"))[0][0] == "server"
    assert s.from_client(msg(id="1", method="ping"))[0][0] == "server"
    assert decode(s.from_client(msg(id=1, method="ping"))[0][1])["error"]["code"] == -32600


def test_reserved_id_prefix_refused() -> None:
    """A client may not use the gateway's reserved id namespace."""
    s = make_session()
    out = decode(s.from_client(msg(id="portcullis-s-1", method="ping"))[0][1])
    assert out["error"]["code"] == -32600


def test_tools_list_filtered() -> None:
    """Denied tools disappear from tools/list; unknown fields and confirm tools stay."""
    s = make_session()
    s.from_client(msg(id=1, method="tools/list"))
    tools = [{"name": n, "x-vendor": 1} for n in ("echo", "delete_file", "write_file", "other")]
    out = s.from_server(msg(id=1, result={"tools": tools, "nextCursor": "c2", "ttlMs": 5}))
    result = decode(out[0][1])["result"]
    assert [t["name"] for t in result["tools"]] == ["echo", "write_file"]
    assert result["nextCursor"] == "c2"
    assert result["ttlMs"] == 5
    assert result["tools"][0]["x-vendor"] == 1


def test_every_page_is_filtered() -> None:
    """Pagination: the second page is filtered as well as the first."""
    s = make_session()
    s.from_client(msg(id=1, method="tools/list"))
    s.from_server(msg(id=1, result={"tools": [{"name": "echo"}], "nextCursor": "p2"}))
    s.from_client(msg(id=2, method="tools/list", params={"cursor": "p2"}))
    out = decode(s.from_server(msg(id=2, result={"tools": [{"name": "rm_delete"}]}))[0][1])
    assert out["result"]["tools"] == []


def test_tools_list_duplicate_description_refused() -> None:
    """A tools/list result with duplicate keys is not relayed."""
    s = make_session()
    s.from_client(msg(id=1, method="tools/list"))
    raw = b'{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","name":"delete_all"}]}}'
    assert decode(s.from_server(raw)[0][1])["error"]["code"] == fr.DENIED


def test_resources_and_prompts_rules() -> None:
    """resources/read is matched on the URI and prompts/get on the name."""
    s = make_session(
        resources=Rules(default="allow", deny=("file:///etc/*",)),
        prompts=Rules(default="deny", allow=("simple-*",)),
    )
    err = decode(
        s.from_client(msg(id=1, method="resources/read", params={"uri": "file:///etc/passwd"}))[0][
            1
        ]
    )
    assert err["error"]["code"] == fr.DENIED
    assert err["error"]["data"]["rule"] == "resources.deny"
    assert (
        s.from_client(msg(id=2, method="resources/read", params={"uri": "file:///srv/a"}))[0][0]
        == "server"
    )
    assert (
        s.from_client(msg(id=3, method="prompts/get", params={"name": "simple-prompt"}))[0][0]
        == "server"
    )
    assert decode(s.from_client(msg(id=4, method="prompts/get", params={"name": "evil"}))[0][1])[
        "error"
    ]
    comp = msg(
        id=5,
        method="completion/complete",
        params={
            "ref": {"type": "ref/prompt", "name": "evil"},
            "argument": {"name": "a", "value": ""},
        },
    )
    assert decode(s.from_client(comp)[0][1])["error"]["code"] == fr.DENIED


def test_server_request_ids_are_remapped_and_restored() -> None:
    """A server's request reaches the client under a gateway id; the answer goes back under the server's id."""
    s = make_session(server_requests=ServerRequests(sampling="allow"))
    [(dest, data)] = s.from_server(
        msg(id=0, method="sampling/createMessage", params={"messages": []})
    )
    assert dest == "client"
    ours = decode(data)["id"]
    assert isinstance(ours, str) and ours.startswith("portcullis-")
    [(dest, back)] = s.from_client(msg(id=ours, result={"role": "assistant"}))
    assert dest == "server"
    assert decode(back)["id"] == 0


def test_server_cannot_answer_for_the_client() -> None:
    """A response from the server to an id the client never sent is dropped."""
    s = make_session()
    assert s.from_server(msg(id=42, result={})) == []


def test_client_response_to_unknown_id_dropped() -> None:
    """A client response to an id the gateway never issued is not forwarded."""
    s = make_session()
    assert s.from_client(msg(id="portcullis-s-99", result={})) == []


def test_sampling_denied_by_default(recorder: Recorder) -> None:
    """sampling/createMessage is denied by default and answered to the server with an error."""
    s = make_session(recorder)
    [(dest, data)] = s.from_server(msg(id=5, method="sampling/createMessage", params={}))
    assert dest == "server"
    assert decode(data)["error"]["code"] == fr.DENIED
    assert recorder.records[-1]["rule"] == "server_requests.sampling"


def test_elicitation_deny() -> None:
    """elicitation/create can be denied by server_requests."""
    s = make_session(server_requests=ServerRequests(elicitation="deny"))
    [(dest, data)] = s.from_server(msg(id=5, method="elicitation/create", params={}))
    assert dest == "server" and decode(data)["error"]["code"] == fr.DENIED


def test_roots_answered_from_policy() -> None:
    """roots/list is answered by the gateway with the policy's roots; the client is never asked."""
    s = make_session(roots=("/srv/project",))
    [(dest, data)] = s.from_server(msg(id=5, method="roots/list"))
    assert dest == "server"
    assert decode(data)["result"] == {"roots": [{"uri": "file:///srv/project", "name": "project"}]}


def test_mrtr_roots_answer_replaced_on_retry() -> None:
    """2026: a retry's answer to the server's roots/list input request is replaced by the policy's roots."""
    s = make_session(roots=("/srv/project",))
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
    s.from_client(msg(id=1, method="tools/call", params={"name": "echo", "_meta": meta}))
    assert s.era == "2026-07-28"
    s.from_server(
        msg(
            id=1,
            result={
                "resultType": "input_required",
                "requestState": "st",
                "inputRequests": {"r": {"method": "roots/list"}},
            },
        )
    )
    retry = msg(
        id=2,
        method="tools/call",
        params={
            "name": "echo",
            "_meta": meta,
            "requestState": "st",
            "inputResponses": {"r": {"roots": [{"uri": "file:///"}]}},
        },
    )
    [(dest, data)] = s.from_client(retry)
    assert dest == "server"
    assert decode(data)["params"]["inputResponses"]["r"]["roots"][0]["uri"] == "file:///srv/project"


def test_mrtr_sampling_denied() -> None:
    """2026: an input_required result asking for sampling is refused when sampling is denied."""
    s = make_session()
    s.from_client(call(1, "echo"))
    out = decode(
        s.from_server(
            msg(
                id=1,
                result={
                    "resultType": "input_required",
                    "inputRequests": {"s": {"method": "sampling/createMessage", "params": {}}},
                },
            )
        )[0][1]
    )
    assert out["result"]["isError"] is True


def test_cancel_of_refused_call_is_dropped() -> None:
    """A cancellation for a call the gateway refused never reaches the server."""
    s = make_session()
    s.from_client(call(1, "delete_file"))
    assert s.from_client(msg(method="notifications/cancelled", params={"requestId": 1})) == []
    s.from_client(call(2, "echo"))
    cancel = msg(method="notifications/cancelled", params={"requestId": 2})
    assert s.from_client(cancel) == [("server", cancel)]
    assert s.from_server(msg(id=2, result={})) == []  # a late answer is dropped


def test_server_cancel_of_remapped_request_is_translated() -> None:
    """The server cancelling its own request reaches the client with the gateway's id."""
    s = make_session(server_requests=ServerRequests(elicitation="allow"))
    ours = decode(s.from_server(msg(id=3, method="elicitation/create", params={}))[0][1])["id"]
    out = s.from_server(msg(method="notifications/cancelled", params={"requestId": 3}))
    assert decode(out[0][1])["params"]["requestId"] == ours


def test_progress_passes_through() -> None:
    """Progress notifications pass through untouched in both directions."""
    s = make_session()
    p = msg(method="notifications/progress", params={"progressToken": "t", "progress": 1})
    assert s.from_server(p) == [("client", p)]


def test_oversize_from_server_answers_pending_request() -> None:
    """A result over the cap answers the pending request with a too-large error."""
    s = make_session()
    s.from_client(call(12, "echo"))
    over = Oversize(10**9, b'{"jsonrpc":"2.0","id":12,"result":{', b'"}]}}')
    [(dest, data)] = s.oversize("server", over)
    assert dest == "client"
    assert decode(data)["error"]["code"] == fr.TOO_LARGE
    assert decode(data)["id"] == 12


def test_upstream_gone_answers_every_pending_request() -> None:
    """When the server exits, every request it owed is answered with an error."""
    s = make_session()
    s.from_client(call(1, "echo"))
    s.from_client(msg(id=2, method="tools/list"))
    outs = s.upstream_gone(3)
    assert sorted(decode(d)["id"] for _, d in outs) == [1, 2]
    assert all(decode(d)["error"]["code"] == fr.UPSTREAM_GONE for _, d in outs)


def test_non_json_from_server_is_skipped() -> None:
    """A line of non-JSON on the server's stdout is logged and skipped."""
    s = make_session()
    assert s.from_server(b"Starting server...") == []


def test_tool_result_audited_with_size_and_latency(recorder: Recorder) -> None:
    """A tools/call result writes an s2c record with result_bytes and latency_ms."""
    s = make_session(recorder)
    s.from_client(call(1, "echo"))
    raw = msg(id=1, result={"content": []})
    assert s.from_server(raw) == [("client", raw)]
    assert recorder.records[-1]["direction"] == "c2s"  # written once the result is sent
    s.after_send()
    rec = recorder.records[-1]
    assert rec["direction"] == "s2c" and rec["result_bytes"] == len(raw)
    assert rec["latency_ms"] >= 0


def test_era_comes_from_meta_not_from_arguments() -> None:
    """The protocol-version key inside a tool argument does not switch the era; _meta does."""
    s = make_session()
    s.from_client(msg(id=0, method="initialize", params={"protocolVersion": "2025-11-25"}))
    s.from_client(call(1, "echo", {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}))
    assert s.era == "legacy"
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
    s.from_client(msg(id=2, method="tools/list", params={"_meta": meta}))
    assert s.era == "2026-07-28"


def test_duplicate_method_key_refused() -> None:
    """A request whose method is duplicated is refused, whichever duplicate a server would keep."""
    s = make_session()
    raw = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all"},"method":"ping"}'
    [(dest, _)] = s.from_client(raw)
    assert dest == "client"


def test_tools_call_as_notification_is_dropped() -> None:
    """A tools/call without an id is not forwarded: it could not be refused with an answer."""
    s = make_session()
    assert s.from_client(msg(method="tools/call", params={"name": "delete_file"})) == []


def test_guard_crash_is_a_refusal(recorder: Recorder, monkeypatch) -> None:
    """An exception inside a guard refuses the call with rule internal-error instead of forwarding it."""
    s = make_session(recorder)

    class Broken:
        def decide(self, name: str) -> None:
            raise RuntimeError("bug")

    monkeypatch.setattr(s, "_tools", Broken())
    [(dest, data)] = s.from_client(call(1, "echo"))
    assert dest == "client"
    assert "internal error" in decode(data)["result"]["content"][0]["text"]
    assert recorder.records[-1]["rule"] == "internal-error"


def test_result_guard_crash_withholds_the_result(monkeypatch) -> None:
    """An exception while inspecting a result answers the client with a refusal, not the result."""
    s = make_session()
    s.from_client(msg(id=1, method="tools/list"))

    def boom(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(s, "_filter_items", boom)
    [(dest, data)] = s.from_server(msg(id=1, result={"tools": [{"name": "rm_delete"}]}))
    assert dest == "client"
    assert decode(data)["error"]["data"]["rule"] == "internal-error"


def test_redacted_audit_arguments_mask_secrets() -> None:
    """audit.arguments: redacted keeps the arguments with their secrets replaced by markers."""
    from portcullis.gateway.session import Auditor

    auditor = Auditor(None, lambda v: "digest", arguments="redacted", base={})
    key = "AKIA" + "Q3EGRTV7LZ5MX2PB"
    kept = auditor.args({"path": "/srv/a", "token": key})
    assert kept["path"] == "/srv/a"
    assert key not in str(kept)
