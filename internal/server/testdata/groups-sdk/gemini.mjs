// One operation of the official Google Gen AI SDK (@google/genai, Gemini
// API) against gpt-load, printed as one JSON line: the text, and for
// stream the number of chunks. Any error the SDK raises exits non-zero
// with its message. Run by internal/server/sdk_groups_test.go with
// BASE_URL (the SDK's httpOptions.baseUrl), TOKEN and MODEL set, and
// API_VERSION when not the SDK's default; the operation is the first
// argument.
import { GoogleGenAI } from "@google/genai";

const ai = new GoogleGenAI({
  apiKey: process.env.TOKEN,
  httpOptions: { baseUrl: process.env.BASE_URL, timeout: 20000 },
  ...(process.env.API_VERSION ? { apiVersion: process.env.API_VERSION } : {}),
});
const params = { model: process.env.MODEL, contents: "Say hello" };

try {
  let out;
  switch (process.argv[2]) {
    case "generate": {
      const r = await ai.models.generateContent(params);
      out = { text: r.text, model: r.modelVersion };
      break;
    }
    case "stream": {
      let text = "";
      let chunks = 0;
      for await (const chunk of await ai.models.generateContentStream(params)) {
        chunks++;
        text += chunk.text ?? "";
      }
      out = { text, chunks };
      break;
    }
    default:
      throw new Error(`unknown operation ${process.argv[2]}`);
  }
  console.log(JSON.stringify(out));
} catch (err) {
  console.error(`gemini sdk: ${err?.constructor?.name}: ${err?.message}`);
  process.exit(1);
}
