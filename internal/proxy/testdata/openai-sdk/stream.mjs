// Streams one chat completion through gpt-load with the official openai SDK
// and prints what the SDK yielded as one JSON line: the text and the number
// of chunks. Any error the SDK raises exits non-zero with its message.
// Run by internal/proxy/sdk_test.go with GPT_LOAD_URL set.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.GPT_LOAD_URL + "/v1",
  apiKey: "sk-client-token",
  maxRetries: 0,
  timeout: 30000,
});

try {
  const stream = await client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Say hello" }],
    stream: true,
  });
  let text = "";
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  console.log(JSON.stringify({ text, chunks }));
} catch (err) {
  console.error(`openai sdk: ${err?.constructor?.name}: ${err?.message}`);
  process.exit(1);
}
