// StyleExpert Routing Preview: a live routing chart on the node, before any sampling.
// Whenever the checkpoint (StyleExpert Load Checkpoint), the CLIP vision model or the style image (Load Image)
// upstream of the node's Encode Style changes, or the node's own top_k/alignment, the chart is
// fetched from POST /styleexpert/routing_preview and shown on the node with its style fingerprint.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE = "StyleExpertRoutingPreview";
const WIDGET = "styleexpert_live_routing";
const ROUTE = "/styleexpert/routing_preview";
const POLL_MS = 800;

function widgetValue(node, name) {
  return node?.widgets?.find((w) => w.name === name)?.value;
}

function upstream(node, inputName) {
  const slot = node?.findInputSlot?.(inputName) ?? -1;
  return slot >= 0 ? node.getInputNode(slot) : null;
}

// Whether the file a combo widget names is one the server lists (a workflow opened on a machine
// without its models names files that are not there: no request, so no failed fetch).
function listed(node, name) {
  const widget = node?.widgets?.find((w) => w.name === name);
  const values = widget?.options?.values;
  return !Array.isArray(values) || values.includes(widget.value);
}

// The route's request for the graph as it is now, or null while it is not wired up yet.
function previewRequest(node) {
  const loader = upstream(node, "styleexpert");
  const encode = upstream(node, "style");
  const body = {
    ckpt_name: widgetValue(loader, "ckpt_name"),
    projector_name: widgetValue(loader, "projector_name") ?? "(none)",
    clip_name: widgetValue(upstream(encode, "clip_vision"), "clip_name"),
    image: widgetValue(upstream(encode, "images"), "image"),
    top_k: widgetValue(node, "top_k") ?? 0,
    alignment: widgetValue(node, "alignment") ?? "from checkpoint",
  };
  const present = listed(loader, "ckpt_name") && listed(upstream(encode, "clip_vision"), "clip_name")
    && listed(upstream(encode, "images"), "image");
  return body.ckpt_name && body.clip_name && body.image && present ? body : null;
}

function liveView(node) {
  let widget = node.widgets?.find((w) => w.name === WIDGET);
  if (widget) return widget.element;
  const element = document.createElement("div");
  element.style.cssText = "display:flex;flex-direction:column;gap:4px;width:100%;height:100%;overflow:hidden";
  const status = document.createElement("div");
  status.className = "styleexpert-live-status";
  status.style.cssText = "font:12px sans-serif;opacity:0.8;white-space:normal";
  status.textContent = "Routing preview: connect StyleExpert Load Checkpoint, and Encode Style with Load CLIP Vision and Load Image (files that are present).";
  const img = document.createElement("img");
  img.className = "styleexpert-live-chart";
  img.style.cssText = "flex:1;min-height:0;object-fit:contain;width:100%";
  element.append(status, img);
  widget = node.addDOMWidget(WIDGET, "styleexpert_live_routing", element, { serialize: false });
  widget.serialize = false; // a view, never part of the saved workflow
  return element;
}

async function refresh(node, body) {
  const element = liveView(node);
  const [status, img] = element.children;
  status.textContent = "Routing preview: encoding the style image…";
  try {
    const response = await api.fetchApi(ROUTE, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const error = await response.json().catch(() => ({ error: response.statusText }));
      status.textContent = `Routing preview: ${error.error}`;
      img.removeAttribute("src");
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    if (img.src) URL.revokeObjectURL(img.src);
    img.onload = () => fitChart(node, img);
    img.src = url;
    status.textContent = response.headers.get("X-StyleExpert-Fingerprint") ?? "";
  } catch (error) {
    status.textContent = `Routing preview: ${error}`;
  } finally {
    node.setDirtyCanvas?.(true, true);
  }
}

// Grow the node so the chart shows at its own size (its text stays readable); never shrink it.
function fitChart(node, img) {
  const [, widgetsHeight] = node.computeSize();
  node.setSize([
    Math.max(node.size[0], img.naturalWidth + 24),
    Math.max(node.size[1], widgetsHeight + img.naturalHeight + 40),
  ]);
  node.setDirtyCanvas?.(true, true);
}

// One pass over the graph: every Routing Preview node whose request changed gets a new chart.
function poll() {
  for (const node of app.graph?.nodes ?? []) {
    if (node.type !== NODE || node.styleexpertBusy) continue;
    const body = previewRequest(node);
    const key = body ? JSON.stringify(body) : null;
    if (key === node.styleexpertLiveKey) continue;
    node.styleexpertLiveKey = key;
    if (!body) continue;
    node.styleexpertBusy = true;
    refresh(node, body).finally(() => {
      node.styleexpertBusy = false;
    });
  }
}

app.registerExtension({
  name: "styleexpert.liveRoutingPreview",
  setup() {
    setInterval(poll, POLL_MS);
  },
});
