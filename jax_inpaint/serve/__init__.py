"""`jax-inpaint serve`: a local web page over the inpainting engine (paint the hole in a browser, watch the
K completions improve chunk by chunk). `engine` (the models and what a request asks of them), `jobs` (one
job at a time on the device, queued), `server` (the HTTP server and the page in `static/`)."""
