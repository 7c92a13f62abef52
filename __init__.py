"""StyleExpert for ComfyUI: reference-image style transfer on FLUX.1 Kontext with routed LoRA experts.

Importing this package registers the `models/styleexpert` folder and copies the example
workflows' images into the input folder where missing (when running inside ComfyUI), registers
the routing preview route (inside a running ComfyUI server) and exposes the V3 entry point; it
does nothing else.
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


def _register_routes() -> None:
    import sys

    server = sys.modules.get("server")  # ComfyUI's server module, imported by main.py before the packs
    if server is None:  # imported outside a ComfyUI server (tests, training scripts): no routes
        return
    from .nodes.preview_route import register_routes

    register_routes(server.PromptServer)


_register_routes()


def _copy_example_images() -> None:
    try:
        import folder_paths
    except ImportError:  # outside ComfyUI there is no input folder
        return
    from .nodes.example_inputs import copy_example_images

    copy_example_images(folder_paths.get_input_directory())


_copy_example_images()

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
