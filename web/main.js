/*
 * The page's entry: creates one lab (this thread's view of the shared
 * arena) and runs each section module with it, in order. A section is
 * { title, run(lab, element) } and fills its element: the text run()
 * returns goes into the section's <pre>; a section that draws its own
 * content (demo.js, which keeps running) returns nothing. Add a section
 * module to `sections` to add one to the page. When every run() has settled
 * the page sets document.body.dataset.state to "ok" or "error" (the browser
 * tests read it).
 */
import { Lab } from "dmabuf-lab";
import * as demo from "./demo.js";
import * as demoIo from "./demo-io.js";
import * as hello from "./hello.js";

const sections = [demo, demoIo, hello];

const status = document.getElementById("status");
const container = document.getElementById("sections");

function show(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

async function main() {
  let lab;
  try {
    lab = await Lab.create({ memoryBytes: 64 << 20 });
  } catch (e) {
    // Not cross-origin isolated, most likely: the message names the headers.
    show(status, `${e.message}`, true);
    return "error";
  }
  show(status, `a ${lab.layout.memoryBytes >> 20} MiB shared arena, cross-origin isolated: ${crossOriginIsolated}`);
  let state = "ok";
  for (const section of sections) {
    const element = document.createElement("section");
    element.innerHTML = `<h2></h2><pre></pre>`;
    element.querySelector("h2").textContent = section.title;
    container.append(element);
    const out = element.querySelector("pre");
    try {
      const text = await section.run(lab, element);
      if (text === undefined) out.remove();
      else show(out, text);
    } catch (e) {
      show(out, e.stack ?? String(e), true);
      state = "error";
    }
  }
  return state;
}

document.body.dataset.state = await main();
