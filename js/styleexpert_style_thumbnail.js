// StyleExpert Load Style: the picked style's thumbnail on the node as soon as it is picked (and when a
// workflow is opened), before any run, shown like Load Image's picture. The picture is the PNG Save Style
// writes into the file's `ssmd_cover_images` metadata, served by ComfyUI's own model-preview endpoint
// (the one its Model Library uses), which needs the index of the models folder that holds the file.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE = "StyleExpertLoadStyle";
const WIDGET = "style_name";
const FOLDER = "styleexpert_styles";
const PREVIEW_WIDGET = "$$canvas-image-preview"; // the frontend's image preview, drawn from node.imgs

// The folder index of the file `name` (the first folder listing it, as the server's loader picks),
// or null when the server does not list it (a workflow from a machine with other styles).
async function folderIndex(name) {
  const response = await api.fetchApi(`/experiment/models/${FOLDER}`);
  if (!response.ok) return null;
  const entry = (await response.json()).find((file) => file.name === name);
  return entry ? entry.pathIndex : null;
}

function loadImage(url) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => resolve(null);
    img.src = url;
  });
}

async function thumbnail(name) {
  const index = await folderIndex(name);
  if (index === null) return null;
  const path = name.split("/").map(encodeURIComponent).join("/");
  return loadImage(api.apiURL(`/experiment/models/preview/${FOLDER}/${index}/${path}`));
}

// No picture: drop the preview widget too, as the frontend does, so nothing draws from an empty list.
function clearThumbnail(node) {
  node.imgs = undefined;
  node.imageIndex = null;
  const at = node.widgets?.findIndex((w) => w.name === PREVIEW_WIDGET) ?? -1;
  if (at >= 0) node.widgets.splice(at, 1)[0].onRemove?.();
}

async function showThumbnail(node) {
  const name = node.widgets?.find((w) => w.name === WIDGET)?.value;
  if (name === node.styleexpertThumbnailOf) return;
  node.styleexpertThumbnailOf = name;
  const img = name ? await thumbnail(name).catch(() => null) : null;
  if (node.styleexpertThumbnailOf !== name) return; // another style was picked meanwhile
  if (img) {
    node.imgs = [img];
    node.imageIndex = 0;
  } else {
    clearThumbnail(node);
  }
  node.styleexpertFitPending = true;
  node.setDirtyCanvas?.(true, true);
}

// Room for the picture below the dropdown, once the frontend's draw added its preview widget (the
// background is drawn before the foreground); never shrink what the user sized.
function fitOnce(node) {
  if (!node.styleexpertFitPending) return;
  node.styleexpertFitPending = false;
  const [width, height] = node.computeSize();
  if (width > node.size[0] || height > node.size[1]) {
    node.setSize([Math.max(node.size[0], width), Math.max(node.size[1], height)]);
    node.setDirtyCanvas?.(true, true);
  }
}

app.registerExtension({
  name: "styleexpert.styleThumbnail",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE) return;
    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function () {
      const result = onDrawForeground?.apply(this, arguments);
      fitOnce(this);
      return result;
    };
  },
  nodeCreated(node) {
    if (node.comfyClass !== NODE) return;
    const widget = node.widgets?.find((w) => w.name === WIDGET);
    if (!widget) return;
    const callback = widget.callback;
    widget.callback = function () {
      const result = callback?.apply(this, arguments);
      showThumbnail(node);
      return result;
    };
    // A node placed from the search box or pasted: its value is final once it is configured.
    setTimeout(() => showThumbnail(node), 0);
  },
  loadedGraphNode(node) {
    if (node.comfyClass === NODE) showThumbnail(node);
  },
});
