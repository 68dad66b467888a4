"""refcolor studio: a local web app (Starlette + uvicorn) over the colorizers, started by
`refcolor serve`. One hand-written page (static/, every asset vendored) and the HTTP API it uses:

    GET  /api/health     models served (and why a kind is not), queue, limits
    POST /api/regions    multipart `sketch` -> GuidingPainter's numbered regions (JSON + overlay)
    POST /api/colorize   multipart `mode` (guide | reference | exemplar) + images + `colors`
                         (+ `flat`: one colour per area enclosed by the lines) -> PNG
    POST /api/line_regions  multipart `sketch` + `gap` -> the areas its lines enclose (the Fill tab's
                         label map, line mask and line art as PNG data URLs; no model needed)

Modules: app (routes), safety (Host/Origin checks, body cap, image decoding limits), worker (the
bounded inference queue off the event loop), models (loading the colorizers). Starlette and uvicorn
are the optional extra `studio`; nothing here is imported by `import refcolor`.
"""
