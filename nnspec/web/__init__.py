"""The playground: `nnspec serve` (a local page that analyses a spec as you type) and
`nnspec html` (the same view as one static file). The page's assets are in static/."""
