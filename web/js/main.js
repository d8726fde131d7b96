/**
 * Entry point: register pages and profile views, then start the router.
 * A new page is one module plus one registerPage() line; a new profile view (tab) is one
 * module plus one registerView() line.
 */
import { registerPage, start } from "./router.js";
import { profileListPage } from "./views/list.js";
import { profilePage, registerView } from "./views/profile.js";
import { flameView, icicleView } from "./views/flame.js";
import { chartView } from "./views/chart.js";
import { sandwichView } from "./views/sandwich.js";
import { topView } from "./views/top.js";
import { diffView } from "./views/diff.js";
import { correlationView } from "./views/correlation.js";
import { routesPage } from "./views/routes.js";
import { routePage } from "./views/route.js";

registerPage(profileListPage);
registerPage(profilePage);
registerPage(routesPage);
registerPage(routePage);

registerView(flameView);
registerView(icicleView);
registerView(chartView);
registerView(sandwichView);
registerView(topView);
registerView(diffView);
registerView(correlationView);

start(document.getElementById("app"));
