"""One driver per official SDK, with the same small interface, so a test can run the
same conversation through any client protocol (openai, anthropic, google-genai)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
from google import genai
from google.genai import types

from tests.conftest import API_KEY

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}},
    "required": ["city"],
}
QUESTION = "What's the weather in Paris?"


@dataclass
class ToolTurn:
    name: str
    arguments: dict[str, Any]
    final_text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class OpenAIDriver:
    def __init__(self, base: str) -> None:
        self.client = openai.AsyncOpenAI(
            base_url=f"{base}/v1", api_key=API_KEY, max_retries=0
        )

    async def close(self) -> None:
        await self.client.close()

    async def create(self, text: str, system: str | None = None) -> tuple[str, str]:
        messages: list[Any] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": text})
        result = await self.client.chat.completions.create(model="m", messages=messages)
        choice = result.choices[0]
        return choice.message.content or "", str(choice.finish_reason)

    async def stream(self, text: str) -> str:
        stream = await self.client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": text}],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        return "".join(parts)

    async def tool_round_trip(self, *, stream: bool) -> ToolTurn:
        tools: Any = [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA},
            }
        ]
        messages: list[Any] = [{"role": "user", "content": QUESTION}]
        first: Any
        if stream:
            async with self.client.chat.completions.stream(
                model="m", messages=messages, tools=tools
            ) as s:
                first = await s.get_final_completion()
        else:
            first = await self.client.chat.completions.create(
                model="m", messages=messages, tools=tools
            )
        message = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls"
        call = message.tool_calls[0]
        messages.append(message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"})
        second = await self.client.chat.completions.create(
            model="m", messages=messages, tools=tools
        )
        return ToolTurn(
            call.function.name,
            json.loads(call.function.arguments),
            second.choices[0].message.content or "",
        )


class ClaudeDriver:
    def __init__(self, base: str) -> None:
        self.client = anthropic.AsyncAnthropic(
            base_url=base, api_key=API_KEY, max_retries=0
        )

    async def close(self) -> None:
        await self.client.close()

    async def create(self, text: str, system: str | None = None) -> tuple[str, str]:
        extra: Any = {"system": system} if system else {}
        message = await self.client.messages.create(
            model="m", max_tokens=100, messages=[{"role": "user", "content": text}], **extra
        )
        texts = [b.text for b in message.content if b.type == "text"]
        return "".join(texts), str(message.stop_reason)

    async def stream(self, text: str) -> str:
        async with self.client.messages.stream(
            model="m", max_tokens=100, messages=[{"role": "user", "content": text}]
        ) as s:
            final = await s.get_final_message()
            assert final.usage.output_tokens >= 0
        return "".join(b.text for b in final.content if b.type == "text")

    async def tool_round_trip(self, *, stream: bool) -> ToolTurn:
        tools: Any = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
        messages: list[Any] = [{"role": "user", "content": QUESTION}]
        first: Any
        if stream:
            async with self.client.messages.stream(
                model="m", max_tokens=100, messages=messages, tools=tools
            ) as s:
                first = await s.get_final_message()
        else:
            first = await self.client.messages.create(
                model="m", max_tokens=100, messages=messages, tools=tools
            )
        assert first.stop_reason == "tool_use"
        use = next(b for b in first.content if b.type == "tool_use")
        messages.append({"role": "assistant", "content": first.content})
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 C"}
                ],
            }
        )
        second = await self.client.messages.create(
            model="m", max_tokens=100, messages=messages, tools=tools
        )
        text = "".join(b.text for b in second.content if b.type == "text")
        return ToolTurn(use.name, dict(use.input), text)


class GeminiDriver:
    def __init__(self, base: str) -> None:
        self.client = genai.Client(
            api_key=API_KEY, http_options=types.HttpOptions(base_url=base)
        )

    async def close(self) -> None:
        await self.client.aio.aclose()

    async def create(self, text: str, system: str | None = None) -> tuple[str, str]:
        config = types.GenerateContentConfig(system_instruction=system) if system else None
        result = await self.client.aio.models.generate_content(
            model="gemini-2.5-flash", contents=text, config=config
        )
        candidate = result.candidates[0]  # type: ignore[index]
        return result.text or "", str(candidate.finish_reason.value)  # type: ignore[union-attr]

    async def stream(self, text: str) -> str:
        parts = []
        async for chunk in await self.client.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents=text
        ):
            parts.append(chunk.text or "")
        return "".join(parts)

    async def tool_round_trip(self, *, stream: bool) -> ToolTurn:
        tool = types.Tool(
            function_declarations=[
                types.FunctionDeclaration(
                    name="get_weather",
                    parameters_json_schema=WEATHER_SCHEMA,
                )
            ]
        )
        config = types.GenerateContentConfig(
            tools=[tool],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        contents: list[Any] = [
            types.Content(role="user", parts=[types.Part(text=QUESTION)])
        ]
        if stream:
            model_parts: list[types.Part] = []
            async for chunk in await self.client.aio.models.generate_content_stream(
                model="gemini-2.5-flash", contents=contents, config=config
            ):
                candidate = chunk.candidates[0] if chunk.candidates else None
                if candidate and candidate.content and candidate.content.parts:
                    model_parts += candidate.content.parts
            model_content = types.Content(role="model", parts=model_parts)
        else:
            first = await self.client.aio.models.generate_content(
                model="gemini-2.5-flash", contents=contents, config=config
            )
            model_content = first.candidates[0].content  # type: ignore[index,assignment]
        calls = [p.function_call for p in model_content.parts or () if p.function_call]
        call = calls[0]
        contents.append(model_content)
        contents.append(
            types.Content(
                role="user",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(
                            id=call.id, name=call.name, response={"output": "Sunny, 21 C"}
                        )
                    )
                ],
            )
        )
        second = await self.client.aio.models.generate_content(
            model="gemini-2.5-flash", contents=contents, config=config
        )
        return ToolTurn(str(call.name), dict(call.args or {}), second.text or "")


Driver = OpenAIDriver | ClaudeDriver | GeminiDriver
DRIVERS: dict[str, type[Driver]] = {
    "openai": OpenAIDriver,
    "claude": ClaudeDriver,
    "gemini": GeminiDriver,
}
