/** Chart.js with every chart type registered, once for the whole page. */
import { Chart, registerables } from 'chart.js';

Chart.register(...registerables);

export { Chart };
