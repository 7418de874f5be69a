// A spoken turn with OpenAI's official JavaScript client against `speechllm serve`: only the
// base URL changes. Needs Node 20+ and `npm install openai ws`.
//
//   ./dev python -c "from speechllm.audio import load; \
//       open('q.pcm', 'wb').write(load('examples/question.wav', 24000).to_pcm16())"
//   SPEECHLLM_URL=http://127.0.0.1:8000/v1 node examples/openai_realtime_client.mjs q.pcm
//
// Streams the 24 kHz 16-bit mono PCM at real-time pace, prints what it hears and the answer's
// transcript as it comes, and writes the spoken answer to answer-24k.pcm.
import fs from "node:fs";
import OpenAI from "openai";
import { OpenAIRealtimeWS } from "openai/realtime/ws";

const client = new OpenAI({
  baseURL: process.env.SPEECHLLM_URL ?? "http://127.0.0.1:8000/v1",
  apiKey: process.env.SPEECHLLM_API_KEY ?? "none",
});
const rt = new OpenAIRealtimeWS({ model: "speechllm" }, client);
const pcm = fs.readFileSync(process.argv[2] ?? "q.pcm");
const answer = [];

rt.socket.on("open", async () => {
  rt.send({
    type: "session.update",
    session: {
      type: "realtime",
      output_modalities: ["audio"],
      audio: {
        input: { format: { type: "audio/pcm", rate: 24000 }, turn_detection: { type: "server_vad" } },
        output: { format: { type: "audio/pcm", rate: 24000 } },
      },
    },
  });
  const chunk = 4800; // 100 ms
  for (let i = 0; i < pcm.length; i += chunk) {
    rt.send({ type: "input_audio_buffer.append", audio: pcm.subarray(i, i + chunk).toString("base64") });
    await new Promise((r) => setTimeout(r, 100));
  }
  const silence = Buffer.alloc(chunk); // a second of silence ends the turn
  for (let i = 0; i < 10; i++) {
    rt.send({ type: "input_audio_buffer.append", audio: silence.toString("base64") });
    await new Promise((r) => setTimeout(r, 100));
  }
});
rt.on("conversation.item.input_audio_transcription.completed", (e) => console.log(`heard: ${e.transcript}`));
rt.on("response.output_audio_transcript.delta", (e) => process.stdout.write(e.delta));
rt.on("response.output_audio.delta", (e) => answer.push(Buffer.from(e.delta, "base64")));
rt.on("response.done", (e) => {
  const audio = Buffer.concat(answer);
  fs.writeFileSync("answer-24k.pcm", audio);
  console.log(`\n${e.response.status}: ${(audio.length / 48000).toFixed(2)} s of audio in answer-24k.pcm`);
  rt.close();
});
rt.on("error", (err) => {
  console.error(err);
  rt.close();
  process.exitCode = 1;
});
