"""StyleExpert for ComfyUI: reference-image style transfer on FLUX.1 Kontext with routed LoRA experts.

Importing this package registers the `models/styleexpert` folder and copies the example
workflows' images into the input folder where missing (when running inside ComfyUI), and
exposes the V3 entry point; it does nothing else.
"""

WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    from .nodes.extension import StyleExpertExtension

    return StyleExpertExtension()


def _register_model_folder() -> None:
    try:
        import folder_paths
    except ImportError:  # imported outside ComfyUI (tests, training scripts): nothing to register
        return
    from .nodes.model_folder import register_model_folder

    register_model_folder(folder_paths)


_register_model_folder()


def _copy_example_images() -> None:
    try:
        import folder_paths
    except ImportError:  # outside ComfyUI there is no input folder
        return
    from .nodes.example_inputs import copy_example_images

    copy_example_images(folder_paths.get_input_directory())


_copy_example_images()

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
