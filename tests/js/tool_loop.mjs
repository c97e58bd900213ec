// The official openai JS client against a live Salut node: a full tool loop (call, result,
// answer), a streamed tool call accumulated from delta.tool_calls, the SDK's own stream helper,
// and a streamed text answer. Prints what the client parsed as one JSON object; the Python test
// (tests/test_js_client.py) scripts the answers beforehand and checks this output.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.SALUT_BASE_URL, apiKey: "unused", maxRetries: 0 });
const model = process.env.SALUT_MODEL;
const tools = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];
const ask = [{ role: "user", content: "What is the weather in Paris?" }];
const out = {};

// 1. The model calls the tool; 2. the result goes back and the model answers.
const first = await client.chat.completions.create({ model, messages: ask, tools, temperature: 0 });
const message = first.choices[0].message;
out.first = { finish: first.choices[0].finish_reason, content: message.content, calls: message.tool_calls };
const history = [...ask, message, { role: "tool", tool_call_id: message.tool_calls[0].id, content: "sunny, 21 C" }];
const final = await client.chat.completions.create({ model, messages: history, tools, temperature: 0 });
out.final = { finish: final.choices[0].finish_reason, content: final.choices[0].message.content };

// 3. A streamed tool call, accumulated by index as OpenAI's docs show.
const stream = await client.chat.completions.create({ model, messages: ask, tools, temperature: 0, stream: true });
const calls = {};
let finish = null;
for await (const chunk of stream) {
  for (const part of chunk.choices[0].delta.tool_calls ?? []) {
    const slot = (calls[part.index] ??= { id: "", name: "", arguments: "" });
    slot.id += part.id ?? "";
    slot.name += part.function?.name ?? "";
    slot.arguments += part.function?.arguments ?? "";
  }
  finish = chunk.choices[0].finish_reason ?? finish;
}
out.streamed = { finish, calls };

// 4. The SDK's stream helper accumulates the same call itself.
const runner = client.chat.completions.stream({ model, messages: ask, tools, temperature: 0 });
const done = await runner.finalChatCompletion();
out.helper = { finish: done.choices[0].finish_reason, calls: done.choices[0].message.tool_calls };

// 5. Streamed text, no tools.
const text = await client.chat.completions.create({ model, messages: ask, max_tokens: 5, temperature: 0, stream: true });
let content = "";
let textFinish = null;
for await (const chunk of text) {
  content += chunk.choices[0]?.delta?.content ?? "";
  textFinish = chunk.choices[0]?.finish_reason ?? textFinish;
}
out.text = { content, finish: textFinish };

// 6. The Responses API, streamed: typed events.
const events = await client.responses.create({ model, input: "Say hello.", temperature: 0, stream: true });
const kinds = [];
let deltas = "";
let finalText = null;
for await (const event of events) {
  kinds.push(event.type);
  if (event.type === "response.output_text.delta") deltas += event.delta;
  if (event.type === "response.completed") finalText = event.response.output[0].content[0].text;
}
out.responses = { kinds, deltas, finalText };

console.log(JSON.stringify(out));
