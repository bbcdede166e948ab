// One operation of the official openai SDK against gpt-load, printed as one
// JSON line: chat and stream print the text (and the number of chunks),
// models prints the ids listed. Any error the SDK raises exits non-zero
// with its message. Run by internal/server/sdk_groups_test.go with
// BASE_URL (the SDK's baseURL), TOKEN and MODEL set; the operation is the
// first argument.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.BASE_URL,
  apiKey: process.env.TOKEN,
  maxRetries: 0,
  timeout: 20000,
});
const model = process.env.MODEL;
const messages = [{ role: "user", content: "Say hello" }];

try {
  let out;
  switch (process.argv[2]) {
    case "chat": {
      const r = await client.chat.completions.create({ model, messages });
      out = { text: r.choices[0].message.content, model: r.model };
      break;
    }
    case "stream": {
      const stream = await client.chat.completions.create({ model, messages, stream: true });
      let text = "";
      let chunks = 0;
      for await (const chunk of stream) {
        chunks++;
        text += chunk.choices[0]?.delta?.content ?? "";
      }
      out = { text, chunks };
      break;
    }
    case "models": {
      const ids = [];
      for await (const m of client.models.list()) ids.push(m.id);
      out = { ids };
      break;
    }
    default:
      throw new Error(`unknown operation ${process.argv[2]}`);
  }
  console.log(JSON.stringify(out));
} catch (err) {
  console.error(`openai sdk: ${err?.constructor?.name}: ${err?.message}`);
  process.exit(1);
}
