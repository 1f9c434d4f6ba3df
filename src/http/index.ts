/**
 * HTTP helpers shared by the project's servers (the backend stub, `trainjob serve`) and open to whoever embeds
 * them (`astrago-trainer/http`): one error type and code-to-status table, one JSON answer, one body reader.
 */
export { HttpError, HTTP_STATUS_FOR_CODE, httpErrorOf, httpStatusFor, methodNotAllowed } from "./errors.ts";
export { sendJson } from "./respond.ts";
export { bearerCheck, bearerToken } from "./bearer.ts";
export { checkJsonContentType, parseJsonBody, readBody } from "./body.ts";
export { jsonShapeProblem, type JsonShapeProblem } from "./json-shape.ts";
export { isLoopbackHost, listenOn } from "./listen.ts";
