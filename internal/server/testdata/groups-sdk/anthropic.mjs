// One operation of the official Anthropic SDK against gpt-load, printed as
// one JSON line: the text, and for stream the number of text deltas, the
// event types in order and the message the SDK assembled from them. Any
// error the SDK raises exits non-zero with its message. Run by
// internal/server/sdk_groups_test.go with BASE_URL (the SDK's baseURL),
// TOKEN and MODEL set; the operation is the first argument.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({
  baseURL: process.env.BASE_URL,
  apiKey: process.env.TOKEN,
  maxRetries: 0,
  timeout: 20000,
});
const params = {
  model: process.env.MODEL,
  max_tokens: 64,
  messages: [{ role: "user", content: "Say hello" }],
};
const textOf = (msg) => msg.content.filter((b) => b.type === "text").map((b) => b.text).join("");

try {
  let out;
  switch (process.argv[2]) {
    case "create": {
      const msg = await client.messages.create(params);
      out = { text: textOf(msg), model: msg.model };
      break;
    }
    case "stream": {
      const stream = client.messages.stream(params);
      let text = "";
      let chunks = 0;
      const events = [];
      for await (const ev of stream) {
        events.push(ev.type);
        if (ev.type === "content_block_delta" && ev.delta.type === "text_delta") {
          chunks++;
          text += ev.delta.text;
        }
      }
      const final = await stream.finalMessage();
      out = { text, chunks, events, final: textOf(final), stop: final.stop_reason };
      break;
    }
    default:
      throw new Error(`unknown operation ${process.argv[2]}`);
  }
  console.log(JSON.stringify(out));
} catch (err) {
  console.error(`anthropic sdk: ${err?.constructor?.name}: ${err?.message}`);
  process.exit(1);
}
