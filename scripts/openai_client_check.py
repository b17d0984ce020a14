#!/usr/bin/env python3
"""Check a running `retort serve` with the official `openai` Python client.

Usage: scripts/openai_client_check.py BASE_URL [API_KEY]

BASE_URL is the server root, e.g. http://127.0.0.1:8000 (the client is
pointed at BASE_URL/v1). Asserts that /v1/chat/completions and /v1/responses
give well-formed tool calls for the seed's weather example, that
tool_choice "none" gives no call, that a named tool_choice is honoured, and
that unsupported requests raise the client's typed errors. Checks shapes,
not model quality: any answering model must pass. Exits non-zero on failure.
Install the client with scripts/setup-python-test-deps.sh.
"""

import json
import sys

import openai

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a given city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city, e.g. San Francisco"},
            "units": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}
EMAIL = {
    "name": "send_email",
    "description": "Send an email message to a recipient",
    "parameters": {
        "type": "object",
        "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
        "required": ["to", "subject"],
    },
}
CHAT_TOOLS = [{"type": "function", "function": WEATHER}, {"type": "function", "function": EMAIL}]
RESP_TOOLS = [dict(type="function", **WEATHER), dict(type="function", **EMAIL)]
PROMPT = "What is the weather in San Francisco?"
NAMES = {"get_weather", "send_email"}
SCHEMAS = {"get_weather": WEATHER["parameters"], "send_email": EMAIL["parameters"]}


def check_arguments(name, arguments):
    assert isinstance(arguments, str), f"arguments must be a JSON string, got {type(arguments)}"
    args = json.loads(arguments)
    assert isinstance(args, dict), f"arguments must decode to an object: {arguments}"
    schema = SCHEMAS[name]
    for r in schema["required"]:
        assert r in args, f"{name}: required argument {r!r} missing in {args}"
    for k in args:
        assert k in schema["properties"], f"{name}: undeclared argument {k!r}"
    return args


def check_chat(client):
    r = client.chat.completions.create(
        model="retort",
        messages=[{"role": "user", "content": PROMPT}],
        tools=CHAT_TOOLS,
    )
    assert r.object == "chat.completion", r.object
    assert r.id, "missing id"
    choice = r.choices[0]
    assert choice.finish_reason in ("tool_calls", "stop"), choice.finish_reason
    if choice.finish_reason == "tool_calls":
        calls = choice.message.tool_calls
        assert calls, "finish_reason tool_calls without tool_calls"
        for tc in calls:
            assert tc.type == "function", tc.type
            assert tc.id, "tool call without id"
            assert tc.function.name in NAMES, tc.function.name
            check_arguments(tc.function.name, tc.function.arguments)
    else:
        assert not choice.message.tool_calls
        assert isinstance(choice.message.content, str)
    assert r.usage is not None and r.usage.total_tokens >= 0

    r = client.chat.completions.create(
        model="retort",
        messages=[{"role": "user", "content": PROMPT}],
        tools=CHAT_TOOLS,
        tool_choice="none",
    )
    assert r.choices[0].finish_reason == "stop", r.choices[0].finish_reason
    assert not r.choices[0].message.tool_calls, "tool_choice none must not call"

    r = client.chat.completions.create(
        model="retort",
        messages=[{"role": "user", "content": PROMPT}],
        tools=CHAT_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
    )
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls"
    assert calls and len(calls) == 1 and calls[0].function.name == "get_weather", calls
    check_arguments("get_weather", calls[0].function.arguments)

    r = client.chat.completions.create(
        model="retort",
        messages=[{"role": "user", "content": PROMPT}],
        tools=CHAT_TOOLS,
        tool_choice="required",
    )
    assert r.choices[0].message.tool_calls, "tool_choice required must call"

    try:
        client.chat.completions.create(
            model="retort", messages=[{"role": "user", "content": ""}], tools=CHAT_TOOLS
        )
        raise AssertionError("an empty prompt must be refused")
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert "must not be empty" in str(e), str(e)


def check_responses(client):
    r = client.responses.create(model="retort", input=PROMPT, tools=RESP_TOOLS)
    assert r.object == "response", r.object
    assert r.status == "completed", r.status
    assert r.output, "empty output"
    calls = [item for item in r.output if item.type == "function_call"]
    if calls:
        for item in calls:
            assert item.call_id, "function_call without call_id"
            assert item.name in NAMES, item.name
            check_arguments(item.name, item.arguments)
    else:
        assert r.output[0].type == "message", r.output[0].type

    r = client.responses.create(
        model="retort",
        input=[{"role": "user", "content": PROMPT}],
        tools=RESP_TOOLS,
        tool_choice={"type": "function", "name": "get_weather"},
    )
    calls = [item for item in r.output if item.type == "function_call"]
    assert len(calls) >= 1 and all(c.name == "get_weather" for c in calls), r.output
    check_arguments("get_weather", calls[0].arguments)

    r = client.responses.create(model="retort", input=PROMPT, tools=RESP_TOOLS, tool_choice="none")
    assert all(item.type != "function_call" for item in r.output), r.output
    assert isinstance(r.output_text, str) and r.output_text

    try:
        client.responses.create(model="retort", input=PROMPT, tools=[{"type": "web_search"}])
        raise AssertionError("a non-function tool must be refused")
    except openai.BadRequestError as e:
        assert "web_search" in str(e), str(e)


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    base = sys.argv[1].rstrip("/")
    key = sys.argv[2] if len(sys.argv) > 2 else "unused"
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=30)
    check_chat(client)
    check_responses(client)
    print(f"openai {openai.__version__}: chat.completions and responses OK against {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
