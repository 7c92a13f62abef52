// Shows the text a StyleExpert node reports (checkpoint summary, routing, metrics) on the node itself.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const WIDGET = "styleexpert_info";

app.registerExtension({
  name: "styleexpert.textReadout",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith("StyleExpert")) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = message?.text;
      if (!text) return;
      let widget = this.widgets?.find((w) => w.name === WIDGET);
      if (!widget) {
        widget = ComfyWidgets.STRING(this, WIDGET, ["STRING", { multiline: true }], app).widget;
        widget.inputEl.readOnly = true;
        widget.inputEl.style.opacity = 0.75;
        widget.serialize = false; // a readout, never part of the saved workflow
        widget.options = { ...(widget.options ?? {}), serialize: false };
      }
      widget.value = Array.isArray(text) ? text.join("\n") : String(text);
      this.setDirtyCanvas?.(true, true);
    };
  },
});

// ---- Artist workflow: readouts that survive caching and reloads, file lists refreshed after a node
// writes a file, and checkpoints from the Model Library placed as a loader node. ----

const READOUT_PROPERTY = "styleexpert_readout";
// Nodes that write a file another dropdown lists (models/loras, models/styleexpert_styles).
const WRITES_LISTED_FILES = new Set(["StyleExpertBakeLoRA", "StyleExpertSaveStyle"]);

function readoutText(message) {
  const text = message?.text;
  return Array.isArray(text) ? text.join("\n") : text ? String(text) : "";
}

// A node whose output ComfyUI serves from its cache is not run again, so no readout arrives for it
// (a re-queue from another tab, a reloaded page). The last readout is kept in the node's properties,
// which the workflow saves, and shown again when the node is loaded (restoreReadout).
function keepReadouts(nodeType) {
  const onExecuted = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (message) {
    onExecuted?.apply(this, arguments);
    const text = readoutText(message);
    if (!text || message.styleexpert_restored || this.properties[READOUT_PROPERTY] === text) return;
    this.properties[READOUT_PROPERTY] = text;
    // Tell the change tracker, which then stores the workflow for a page reload.
    app.extensionManager?.workflow?.activeWorkflow?.changeTracker?.checkState?.();
  };
}

function restoreReadout(node) {
  const kept = node.properties?.[READOUT_PROPERTY];
  if (kept && String(node.type).startsWith("StyleExpert")) {
    node.onExecuted?.({ text: [kept], styleexpert_restored: true });
  }
}

// Nodes ComfyUI serves from its cache get no readout: show the kept one again once the run is under way.
function restoreCachedReadouts(event) {
  for (const id of event.detail?.nodes ?? []) {
    const node = app.graph?.getNodeById(id);
    if (node) restoreReadout(node);
  }
}

// After Bake LoRA or Save Style wrote a file, the stock loaders' and Load Style's lists show it
// without pressing Refresh (the server lists new files at once; the frontend must ask again).
function refreshListsAfterWriting(nodeType) {
  const onExecuted = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (message) {
    onExecuted?.apply(this, arguments);
    if (readoutText(message) && !message.styleexpert_restored) app.refreshComboInNodes?.();
  };
}

// The frontend's Model Library places a loader node when a model is clicked or dropped on the canvas,
// for the model folders it has a "model to node" mapping for. This frontend keeps that mapping in a
// Pinia store it does not export; the store is reached through the Vue app, and left alone if absent.
function registerModelLibraryLoader() {
  const pinia = document.querySelector("#vue-app")?.__vue_app__?.config?.globalProperties?.$pinia;
  const store = pinia?._s?.get("modelToNode");
  if (!store?.quickRegister || !store.getAllNodeProviders) return false;
  if (!store.getAllNodeProviders("styleexpert").some((p) => p.nodeDef?.name === "StyleExpertLoader")) {
    store.quickRegister("styleexpert", "StyleExpertLoader", "ckpt_name");
  }
  return true;
}

app.registerExtension({
  name: "styleexpert.artistWorkflow",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith("StyleExpert")) return;
    keepReadouts(nodeType);
    if (WRITES_LISTED_FILES.has(nodeData.name)) refreshListsAfterWriting(nodeType);
  },
  loadedGraphNode(node) {
    restoreReadout(node);
  },
  async setup() {
    api.addEventListener("execution_cached", restoreCachedReadouts);
    if (!registerModelLibraryLoader()) {
      console.info("StyleExpert: this frontend has no model-to-node store; Model Library clicks add no loader.");
    }
  },
});
