"""The pack's model folders, merged with any entry the user's extra_model_paths.yaml made:
`models/styleexpert` (checkpoints, aesthetic predictors) and `models/styleexpert_styles` (saved styles,
a folder of its own so styles never show in the checkpoint dropdowns)."""

import os

FOLDER = "styleexpert"
STYLES_FOLDER = "styleexpert_styles"
EXTENSIONS = {".safetensors", ".sft", ".pt", ".pth"}
STYLE_EXTENSIONS = {".safetensors"}


def register_model_folder(folder_paths) -> None:
    for folder, extensions in ((FOLDER, EXTENSIONS), (STYLES_FOLDER, STYLE_EXTENSIONS)):
        default = os.path.join(folder_paths.models_dir, folder)
        if folder in folder_paths.folder_names_and_paths:
            paths, exts = folder_paths.folder_names_and_paths[folder]
            folder_paths.folder_names_and_paths[folder] = (paths, set(exts) | extensions)
            folder_paths.add_model_folder_path(folder, default)
        else:
            folder_paths.folder_names_and_paths[folder] = ([default], set(extensions))
